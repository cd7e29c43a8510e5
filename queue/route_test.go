package queue

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/logrecord"
)

// blockingRouter answers no lookup until release is closed, as a resolver
// that never answers would.
type blockingRouter struct {
	release chan struct{}
	calls   atomic.Int64
}

func (r *blockingRouter) Route(ctx context.Context, rd string, p *config.QueueProtocol) (Route, error) {
	r.calls.Add(1)
	select {
	case <-r.release:
		return siteRoute("mx." + rd), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// TestReceptionNeverWaitsForTheDestination: while the destination lookup
// hangs, Spool and Insert return at once and the messages wait, parked in
// their scheduled queue, with one lookup running for the queue; when it
// answers they are all delivered.
func TestReceptionNeverWaitsForTheDestination(t *testing.T) {
	h := newHarness(t, config.DefaultQueueConfig(), ok250)
	br := &blockingRouter{release: make(chan struct{})}
	h.m.o.Router = br
	const n = 20
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < n; i++ {
			h.inject(t, fmt.Sprintf("r%d", i))
		}
	}()
	select {
	case <-done:
	case <-time.After(time.Second):
		close(br.release) // let the test end
		t.Fatalf("%d receptions did not return within 1s while the lookup hung", n)
	}
	waitFor(t, "every message parked", 2*time.Second, func() bool { return h.m.ParkedCount() == n && br.calls.Load() > 0 })
	if h.m.ScheduledCount() != n || h.conn.sends.Load() != 0 || h.log.Count(logrecord.TransientFailure) != 0 {
		t.Fatalf("scheduled %d, sends %d, records %v", h.m.ScheduledCount(), h.conn.sends.Load(), h.log.All())
	}
	if c := br.calls.Load(); c != 1 {
		t.Fatalf("%d lookups for one scheduled queue", c)
	}
	close(br.release)
	waitFor(t, "deliveries", 5*time.Second, func() bool { return h.log.Count(logrecord.Delivery) == n })
	if h.m.ParkedCount() != 0 || h.spool.len() != 0 {
		t.Fatalf("parked %d, spool %d", h.m.ParkedCount(), h.spool.len())
	}
}
