package queue

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/kumogo/kumogo/internal/adminapi"
	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/logrecord"
	"github.com/kumogo/kumogo/internal/smtpreply"
)

// TestAdminSuspendHoldsAndCancelResumes: with the scheduled queue
// suspended no delivery is attempted and each message logs KumoMTA's
// TransientFailure; cancelling makes them due at once, although their
// retry is an hour away. Suspending and cancelling race with new
// messages (run with -race).
func TestAdminSuspendHoldsAndCancelResumes(t *testing.T) {
	cfg := config.DefaultQueueConfig()
	cfg.RetryInterval = time.Hour
	h := newHarness(t, cfg, ok250)
	ctx := context.Background()
	s, err := h.m.Suspend(ctx, adminapi.SuspendV1Request{Domain: strp("example.com"), Reason: "maint"})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for j := 0; j < 10; j++ {
				h.inject(t, fmt.Sprintf("u%d-%d", i, j))
			}
		}(i)
	}
	wg.Wait()
	waitFor(t, "40 held", 5*time.Second, func() bool { return h.log.Count(logrecord.TransientFailure) == 40 })
	if n := h.conn.sends.Load(); n != 0 {
		t.Fatalf("%d sends while suspended", n)
	}
	r := h.log.ByType(logrecord.TransientFailure)[0]
	if r.Response.Code != 451 || r.Response.Content != "KumoMTA internal: scheduled queue is suspended: maint" || r.Site != "example.com" {
		t.Fatalf("record %+v", r)
	}
	if l := h.m.ListSuspensions(); len(l) != 1 || l[0].ID != s.ID {
		t.Fatalf("list %+v", l)
	}
	if ok, _ := h.m.CancelSuspension(s.ID); !ok {
		t.Fatal("cancel")
	}
	waitFor(t, "40 deliveries after the cancel", 5*time.Second, func() bool { return h.log.Count(logrecord.Delivery) == 40 })
	if ok, _ := h.m.CancelSuspension(s.ID); ok {
		t.Fatal("second cancel succeeded")
	}
}

// TestAdminBounceSweepsAndKeepsBouncing: a bounce takes the waiting
// messages of its queues and bounces new ones; other queues go on.
func TestAdminBounceSweepsAndKeepsBouncing(t *testing.T) {
	cfg := config.DefaultQueueConfig()
	cfg.RetryInterval = time.Hour
	h := newHarness(t, cfg, func(string, int) smtpreply.Response { return smtpreply.Response{Code: 451, Content: "later"} })
	for i := 0; i < 5; i++ {
		h.inject(t, fmt.Sprintf("u%d", i))
	}
	waitFor(t, "5 waiting", 5*time.Second, func() bool { return h.log.Count(logrecord.TransientFailure) == 5 && h.m.ScheduledCount() == 5 })
	resp, err := h.m.Bounce(context.Background(), adminapi.BounceV1Request{Selection: adminapi.Selection{Domain: strp("example.com")}, Reason: "bad"})
	if err != nil || resp.TotalBounced != 5 || resp.Bounced["example.com"] != 5 {
		t.Fatalf("bounce %+v %v", resp, err)
	}
	if h.m.ScheduledCount() != 0 || h.log.Count(logrecord.AdminBounce) != 5 {
		t.Fatalf("%d waiting, %d AdminBounce", h.m.ScheduledCount(), h.log.Count(logrecord.AdminBounce))
	}
	h.inject(t, "late")
	waitFor(t, "the new message bounced", 5*time.Second, func() bool { return h.log.Count(logrecord.AdminBounce) == 6 })
	waitFor(t, "spool emptied", 5*time.Second, func() bool { return h.spool.len() == 0 })
	if l := h.m.ListBounces(); len(l) != 1 || l[0].TotalBounced != 6 {
		t.Fatalf("list %+v", l)
	}
	if _, err := h.m.Bounce(context.Background(), adminapi.BounceV1Request{Reason: " "}); err == nil {
		t.Fatal("a bounce without a reason was accepted")
	}
}

// TestAdminReadyQueueSuspension: messages for a suspended ready queue wait
// in their scheduled queue without an attempt counted, and go out when the
// suspension is cancelled.
func TestAdminReadyQueueSuspension(t *testing.T) {
	h := newHarness(t, config.DefaultQueueConfig(), ok250)
	s, err := h.m.SuspendReadyQueue(context.Background(), adminapi.SuspendReadyQueueV1Request{
		Name: "unspecified->mx.example.com@smtp_client", Reason: "blocked"})
	if err != nil {
		t.Fatal(err)
	}
	m := h.inject(t, "u1")
	waitFor(t, "held", 5*time.Second, func() bool {
		_, n, _ := h.m.InspectScheduledQueue(context.Background(), "example.com", false, 0)
		return n == 1
	})
	time.Sleep(200 * time.Millisecond)
	if h.conn.sends.Load() != 0 || m.Attempts() != 0 {
		t.Fatalf("%d sends, %d attempts while suspended", h.conn.sends.Load(), m.Attempts())
	}
	if ok, _ := h.m.CancelReadyQueueSuspension(s.ID); !ok {
		t.Fatal("cancel")
	}
	waitFor(t, "delivered", 5*time.Second, func() bool { return h.log.Count(logrecord.Delivery) == 1 })
}

// TestAdminRebindMovesMessages: rebind sets the meta, and a message whose
// queue changed is due at once in its new queue, with an AdminRebind
// record.
func TestAdminRebindMovesMessages(t *testing.T) {
	cfg := config.DefaultQueueConfig()
	cfg.RetryInterval = time.Hour
	fail := true
	var mu sync.Mutex
	h := newHarness(t, cfg, func(string, int) smtpreply.Response {
		mu.Lock()
		defer mu.Unlock()
		if fail {
			return smtpreply.Response{Code: 451, Content: "later"}
		}
		return smtpreply.Response{Code: 250, Content: "ok"}
	})
	h.inject(t, "u1")
	h.inject(t, "u2")
	waitFor(t, "2 waiting", 5*time.Second, func() bool { return h.log.Count(logrecord.TransientFailure) == 2 && h.m.ScheduledCount() == 2 })
	mu.Lock()
	fail = false
	mu.Unlock()
	resp, err := h.m.Rebind(context.Background(), adminapi.RebindV1Request{Domain: strp("example.com"), Reason: "move",
		Data: map[string]string{"routing_domain": "other.example"}})
	if err != nil || resp.Matched != 2 || resp.Moved != 2 {
		t.Fatalf("rebind %+v %v", resp, err)
	}
	waitFor(t, "delivered from the new queue", 5*time.Second, func() bool { return h.log.Count(logrecord.Delivery) == 2 })
	recs := h.log.ByType(logrecord.AdminRebind)
	if len(recs) != 2 || recs[0].Response.Content != "Rebound from example.com to example.com!other.example: move" || recs[0].Queue != "example.com!other.example" {
		t.Fatalf("records %+v", recs)
	}
	if d := h.log.ByType(logrecord.Delivery)[0]; d.Site != "unspecified->mx.other.example@smtp_client" {
		t.Fatalf("delivered via %s", d.Site)
	}
}

// TestAdminActionsDuringDelivery: bounces, suspensions, ready queue
// suspensions, rebinds and their cancellations racing with deliveries
// (run with -race) leave every message with exactly one final record,
// Delivery or AdminBounce, and an empty spool.
func TestAdminActionsDuringDelivery(t *testing.T) {
	h := newHarness(t, config.DefaultQueueConfig(), func(string, int) smtpreply.Response {
		time.Sleep(time.Millisecond)
		return smtpreply.Response{Code: 250, Content: "ok"}
	})
	ctx := context.Background()
	const n = 300
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			default:
			}
			// long suspensions: a message whose hold raced with the
			// cancel must still be released by the cancel
			s, _ := h.m.Suspend(ctx, adminapi.SuspendV1Request{Domain: strp("example.com"), Reason: "r", Duration: strp("10m")})
			r, _ := h.m.SuspendReadyQueue(ctx, adminapi.SuspendReadyQueueV1Request{Name: "unspecified->mx.example.com@smtp_client", Reason: "r", Duration: strp("10m")})
			h.m.Rebind(ctx, adminapi.RebindV1Request{Domain: strp("example.com"), Reason: "r", Data: map[string]string{"x": fmt.Sprint(i)}, AlwaysFlush: true})
			h.m.ReadyQueueStates(nil)
			h.m.ListSuspensions()
			time.Sleep(2 * time.Millisecond)
			h.m.CancelSuspension(s.ID)
			h.m.CancelReadyQueueSuspension(r.ID)
			if i%10 == 5 {
				b, _ := h.m.Bounce(ctx, adminapi.BounceV1Request{Selection: adminapi.Selection{QueueNames: []string{"nothing"}}, Reason: "r", Duration: strp("1s")})
				h.m.CancelBounce(b.ID)
			}
		}
	}()
	for i := 0; i < n; i++ {
		h.inject(t, fmt.Sprintf("u%d", i))
		if i == n/2 {
			// bounce what waits of the first half's queue alias now
			if _, err := h.m.Bounce(ctx, adminapi.BounceV1Request{Selection: adminapi.Selection{Domain: strp("example.com")},
				Reason: "half", Duration: strp("1ms")}); err != nil {
				t.Fatal(err)
			}
		}
	}
	time.Sleep(500 * time.Millisecond)
	close(done) // the churn stops; what it held must now go out
	wg.Wait()
	waitFor(t, "every message finished", 20*time.Second, func() bool {
		return h.log.Count(logrecord.Delivery)+h.log.Count(logrecord.AdminBounce) >= n && h.spool.len() == 0
	})
	seen := map[string]int{}
	for _, r := range h.log.All() {
		if r.Type == logrecord.Delivery || r.Type == logrecord.AdminBounce {
			seen[r.ID]++
		}
	}
	if len(seen) != n {
		t.Fatalf("%d messages finished, want %d", len(seen), n)
	}
	for id, c := range seen {
		if c != 1 {
			t.Fatalf("message %s has %d final records", id, c)
		}
	}
}
