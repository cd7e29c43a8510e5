package queue

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/message"
)

// After a large reap the memory goes back to the OS on a goroutine the
// Manager owns: Shutdown waits for it to end and leaves nothing running.
func TestLargeReapScavengesOnOwnedGoroutine(t *testing.T) {
	pol := &fakePolicy{cfg: config.DefaultQueueConfig(), path: config.DefaultEgressPath()}
	m, err := New(Options{Policy: pol, Spool: &memSpool{ids: map[string]bool{}}, Logger: &recLog{}, Router: &fakeRouter{},
		Connector: &fakeConnector{tries: map[string]int{}, script: ok250}, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	started, release := make(chan struct{}, 10), make(chan struct{})
	m.freeOSMemory = func() {
		started <- struct{}{}
		<-release
	}
	m.Start()
	defer close(release)

	// largeReap idle scheduled queues, unused for longer than their
	// reap_interval
	long := time.Now().Add(-time.Hour)
	m.mu.Lock()
	for i := range largeReap {
		name := fmt.Sprintf("d%d.example", i)
		cfg := config.DefaultQueueConfig()
		cfg.ReapInterval = time.Second
		m.sched[name] = &schedQueue{name: name, parts: message.ParseQueueName(name), cfg: cfg, loaded: long, used: long}
	}
	m.mu.Unlock()
	m.reap(time.Now())
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("no scavenge after reaping thousands of queues")
	}
	if s, _ := m.QueueCounts(); s != 0 {
		t.Fatalf("%d scheduled queues left after the reap", s)
	}

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- m.Shutdown(ctx)
	}()
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned (%v) while the scavenge was still running", err)
	case <-time.After(200 * time.Millisecond):
	}
	release <- struct{}{}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not return once the scavenge ended")
	}
	buf := make([]byte, 1<<20)
	stacks := string(buf[:runtime.Stack(buf, true)])
	for _, fn := range []string{"queue.(*Manager).scavenger", "queue.(*Manager).reaper", "runtime/debug.FreeOSMemory"} {
		if strings.Contains(stacks, fn) {
			t.Fatalf("%s still runs after Shutdown:\n%s", fn, stacks)
		}
	}
	// a request after Shutdown starts nothing
	m.requestScavenge()
	select {
	case <-started:
		t.Fatal("a scavenge ran after Shutdown")
	case <-time.After(100 * time.Millisecond):
	}
}
