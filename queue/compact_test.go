package queue

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kumogo/kumogo/internal/adminapi"
	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/logrecord"
	"github.com/kumogo/kumogo/internal/message"
	"github.com/kumogo/kumogo/internal/smtpreply"
)

// heldCompactly reports whether every waiting entry has let go of its
// message.
func heldCompactly(m *Manager) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range m.timers {
		if e.msg != nil {
			return false
		}
	}
	return len(m.timers) > 0
}

// TestCompactAfterPartialDelivery: a message delivered to one recipient
// and deferred for the other waits without its message in memory; the
// stored meta is rewritten first, so inspection shows (and the retry
// sends to) the remaining recipient only, with the meta and body intact.
func TestCompactAfterPartialDelivery(t *testing.T) {
	cfg := config.DefaultQueueConfig()
	cfg.RetryInterval = time.Hour
	h := newHarness(t, cfg, func(u string, n int) smtpreply.Response {
		if u == "temp" && n == 0 {
			return smtpreply.Response{Code: 451, Content: "later"}
		}
		return smtpreply.Response{Code: 250, Content: "ok"}
	})
	rc := []message.Address{{User: "temp", Domain: "example.com"}, {User: "good", Domain: "example.com"}}
	msg := message.New(h.gen, message.Address{User: "s", Domain: "x.com"}, rc, []byte("Subject: t\r\n\r\nbody\r\n"))
	msg.SetMeta("campaign_note", "kept")
	ctx := context.Background()
	if err := h.m.Spool(ctx, msg, false); err != nil {
		t.Fatal(err)
	}
	if err := h.m.Insert(ctx, msg); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the partial outcome", 5*time.Second, func() bool {
		return h.log.Count(logrecord.TransientFailure) == 1 && h.m.ScheduledCount() == 1
	})
	if !heldCompactly(h.m) {
		t.Fatal("the waiting message is still held in memory")
	}
	if n := h.spool.metaSaves.Load(); n != 1 {
		t.Fatalf("%d meta rewrites, want 1 (the recipient list shrank)", n)
	}
	mi, ok, err := h.m.InspectMessage(ctx, msg.ID(), true)
	if err != nil || !ok {
		t.Fatalf("inspect: %v %v", ok, err)
	}
	if fmt.Sprint(mi.Recipients) != "[temp@example.com]" || mi.Sender != "s@x.com" || mi.Meta["campaign_note"] != "kept" ||
		string(mi.Data) != "Subject: t\r\n\r\nbody\r\n" || mi.Attempts != 1 || mi.Due.IsZero() {
		t.Fatalf("inspected %+v", mi)
	}
	list, total, err := h.m.InspectScheduledQueue(ctx, "example.com", false, 0)
	if err != nil || total != 1 || len(list) != 1 || list[0].ID != msg.ID() || list[0].Meta["campaign_note"] != "kept" || list[0].Data != nil {
		t.Fatalf("sched-q %d %+v %v", total, list, err)
	}
	// always_flush makes it due now (meta unchanged otherwise)
	if _, err := h.m.Rebind(ctx, adminapi.RebindV1Request{Reason: "now", Data: map[string]string{"x": "y"}, AlwaysFlush: true,
		Domain: strp("example.com")}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the retry", 5*time.Second, func() bool { return h.spool.len() == 0 })
	var delivered []string
	for _, r := range h.log.ByType(logrecord.Delivery) {
		delivered = append(delivered, r.Recipient...)
		if r.NumAttempts == 1 && (r.Sender != "s@x.com" || r.Size != int64(len("Subject: t\r\n\r\nbody\r\n"))) {
			t.Fatalf("record of the reloaded message %+v", r)
		}
	}
	if fmt.Sprint(delivered) != "[good@example.com temp@example.com]" {
		t.Fatalf("delivered to %v", delivered)
	}
}

// TestCompactBounceAndRestore: an admin bounce of compactly held messages
// writes full records (sender, size) read back from the spool;
// RestoreCompact queues a stored message by id and queue name alone, and
// one that is no longer stored is forgotten when due.
func TestCompactBounceAndRestore(t *testing.T) {
	cfg := config.DefaultQueueConfig()
	cfg.RetryInterval = time.Hour
	h := newHarness(t, cfg, func(u string, n int) smtpreply.Response {
		if u == "later" {
			return smtpreply.Response{Code: 451, Content: "later"}
		}
		return smtpreply.Response{Code: 250, Content: "ok"}
	})
	h.inject(t, "later")
	waitFor(t, "waiting", 5*time.Second, func() bool { return h.m.ScheduledCount() == 1 && heldCompactly(h.m) })
	ctx := context.Background()
	resp, err := h.m.Bounce(ctx, adminapi.BounceV1Request{Selection: adminapi.Selection{Domain: strp("example.com")}, Reason: "bad"})
	if err != nil || resp.TotalBounced != 1 {
		t.Fatalf("bounce %+v %v", resp, err)
	}
	b := h.log.ByType(logrecord.AdminBounce)
	if len(b) != 1 || b[0].Sender != "s@x.com" || fmt.Sprint(b[0].Recipient) != "[later@example.com]" || b[0].Size == 0 || b[0].NumAttempts != 1 {
		t.Fatalf("AdminBounce records %+v", b)
	}
	for _, l := range h.m.ListBounces() {
		h.m.CancelBounce(l.ID)
	}

	// a stored message restored by id alone
	stored := message.New(h.gen, message.Address{User: "s", Domain: "x.com"}, []message.Address{{User: "back", Domain: "example.com"}},
		[]byte("Subject: r\r\n\r\nrestored\r\n"))
	if err := h.spool.Save(ctx, stored, false); err != nil {
		t.Fatal(err)
	}
	if err := h.m.RestoreCompact(ctx, stored.ID(), "example.com", nil); err != nil {
		t.Fatal(err)
	}
	// and one whose spool entry has gone
	gone := message.New(h.gen, message.Address{}, []message.Address{{User: "gone", Domain: "example.com"}}, nil)
	if err := h.m.RestoreCompact(ctx, gone.ID(), "example.com", nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the restored delivery", 5*time.Second, func() bool { return h.log.Count(logrecord.Delivery) == 1 })
	waitFor(t, "the missing one forgotten", 5*time.Second, func() bool { return h.m.ScheduledCount() == 0 })
	d := h.log.ByType(logrecord.Delivery)[0]
	if fmt.Sprint(d.Recipient) != "[back@example.com]" || d.ID != stored.ID() || d.Size != int64(len("Subject: r\r\n\r\nrestored\r\n")) {
		t.Fatalf("restored delivery %+v", d)
	}
	if err := h.m.RestoreCompact(ctx, "not-an-id", "example.com", nil); err == nil {
		t.Fatal("RestoreCompact took an id that is not a spool id")
	}
}

// TestCompactFullReadyQueueReadsNothing: messages due while their ready
// queue is full (max_ready) go back to the scheduled queue without being
// read from the spool; they are read once they have a place.
func TestCompactFullReadyQueueReadsNothing(t *testing.T) {
	h := newHarness(t, config.DefaultQueueConfig(), ok250)
	h.pol.path.MaxReady = 1
	h.pol.path.ConnectionLimit = 1
	release := make(chan struct{})
	var once atomic.Bool
	h.conn.onSend = func(*message.Message) {
		if once.CompareAndSwap(false, true) {
			<-release // the first send holds the only connection
		}
	}
	h.inject(t, "first")
	waitFor(t, "the first send", 5*time.Second, func() bool { return h.conn.sends.Load() == 1 })
	h.inject(t, "second") // fills the ready queue
	ctx := context.Background()
	var ids []string
	for i := 0; i < 20; i++ {
		m := message.New(h.gen, message.Address{User: "s", Domain: "x.com"}, []message.Address{{User: fmt.Sprintf("w%d", i), Domain: "example.com"}},
			[]byte("Subject: w\r\n\r\nwaiting\r\n"))
		if err := h.spool.Save(ctx, m, false); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, m.ID())
	}
	before := h.spool.loads.Load()
	for _, id := range ids {
		if err := h.m.RestoreCompact(ctx, id, "example.com", nil); err != nil {
			t.Fatal(err)
		}
	}
	// at most one finds a place (the ready queue holds one), the rest go back
	waitFor(t, "the restored messages sent back by the full ready queue", 5*time.Second, func() bool {
		return h.m.ScheduledCount() >= 19 && heldCompactly(h.m)
	})
	waiting := h.m.ScheduledCount()
	if n := h.spool.loads.Load() - before; n > int64(20-waiting) {
		t.Fatalf("%d spool reads for %d messages, %d of which found the ready queue full", n, 20, waiting)
	}
	close(release)
	// those sent back are retried when due again, so more may follow
	waitFor(t, "the messages that had a place delivered", 5*time.Second, func() bool {
		return h.log.Count(logrecord.Delivery) >= 2+20-waiting
	})
}
