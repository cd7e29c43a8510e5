package runtime

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"
)

const sinkPolicy = `
kumo.on('smtp_server_message_received', function(msg, conn)
  msg:set_meta('queue', 'null')
end)
`

func TestPoolConcurrency(t *testing.T) {
	r := newRuntime(t, `
kumo.on('smtp_server_message_received', function(msg, conn)
  msg:set_meta('queue', 'null')
  msg:set_meta('rcpt', msg:recipient().email)
  conn:set_meta('n', (conn:get_meta('n') or 0) + 1)
end)`, func(o *Options) { o.MaxStates = 4 })
	r.maxUse.Store(50) // force state recycling during the test
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cm := newTestConn()
			for i := 0; i < 200; i++ {
				msg := testMessage(t, testData, "a@example.com")
				if err := r.MessageReceived(context.Background(), msg, cm); err != nil {
					errs <- err
					return
				}
				if q := msg.QueueName(); q != "null" {
					t.Errorf("queue = %q", q)
				}
			}
			if v, _ := cm.Get("n"); v != int64(200) {
				t.Errorf("n = %v", v)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := len(r.slots); n > 4 {
		t.Fatalf("%d live states, cap 4", n)
	}
}

func TestCloseAndExpiry(t *testing.T) {
	r := newRuntime(t, sinkPolicy)
	r.maxUse.Store(1)
	msg := testMessage(t, testData, "a@example.com")
	for i := 0; i < 3; i++ {
		if err := r.MessageReceived(context.Background(), msg, newTestConn()); err != nil {
			t.Fatal(err)
		}
	}
	if len(r.pool) != 0 {
		t.Fatalf("expired states pooled: %d", len(r.pool))
	}
	r.Close()
	if err := r.MessageReceived(context.Background(), msg, newTestConn()); err == nil {
		t.Fatal("want error after Close")
	}
}

func benchRuntime(b *testing.B) *Runtime {
	return newRuntime(b, sinkPolicy)
}

func BenchmarkMessageReceived(b *testing.B) {
	r := benchRuntime(b)
	msg := testMessage(b, testData, "a@example.com")
	cm := newTestConn()
	ctx := context.Background()
	if err := r.MessageReceived(ctx, msg, cm); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := r.MessageReceived(ctx, msg, cm); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMessageReceivedParallel(b *testing.B) {
	r := benchRuntime(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		msg := testMessage(b, testData, "a@example.com")
		cm := newTestConn()
		for pb.Next() {
			if err := r.MessageReceived(ctx, msg, cm); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkMessageReceivedDeadline(b *testing.B) {
	r := benchRuntime(b)
	msg := testMessage(b, testData, "a@example.com")
	cm := newTestConn()
	ctx, cancel := context.WithTimeout(context.Background(), 1e12)
	defer cancel()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := r.MessageReceived(ctx, msg, cm); err != nil {
			b.Fatal(err)
		}
	}
}

func TestMaxStatesWaitAndDeadline(t *testing.T) {
	r := newRuntime(t, `
kumo.on('t', function(what)
  if what == 'sleep' then kumo.sleep(0.3) end
  if what == 'spin' then while true do end end
  return what
end)`, func(o *Options) { o.MaxStates = 1 })
	started := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		close(started)
		_, err := r.Call(context.Background(), "t", "sleep")
		done <- err
	}()
	<-started
	time.Sleep(50 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := r.Call(ctx, "t", "x"); err == nil || !strings.Contains(err.Error(), "waiting for a Lua state") {
		t.Fatalf("err = %v", err)
	}
	// without a deadline the caller waits for the busy state
	out, err := r.Call(context.Background(), "t", "after")
	if err != nil || out[0] != "after" {
		t.Fatalf("out=%v err=%v", out, err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// a deadline interrupts a runaway handler
	ctx2, cancel2 := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel2()
	if _, err := r.Call(ctx2, "t", "spin"); err == nil {
		t.Fatal("spin: want error")
	}
	out, err = r.Call(context.Background(), "t", "again")
	if err != nil || out[0] != "again" {
		t.Fatalf("out=%v err=%v", out, err)
	}
}

func BenchmarkNewState(b *testing.B) {
	r := benchRuntime(b)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		st, err := r.newState()
		if err != nil {
			b.Fatal(err)
		}
		st.L.Close()
	}
}
