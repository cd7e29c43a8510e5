package queue

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/logrecord"
	"github.com/kumogo/kumogo/internal/message"
	"github.com/kumogo/kumogo/internal/smtpreply"
)

// batchRoute and batchConnector make BatchConns that record each batch:
// its size and when it was sent.
type batchRoute struct{ size int }

func (r batchRoute) Site() string   { return "lua:test" }
func (r batchRoute) BatchSize() int { return r.size }

type batchRouter struct{ size int }

func (r batchRouter) Route(context.Context, string, *config.QueueProtocol) (Route, error) {
	return batchRoute(r), nil
}

type sentBatch struct {
	n  int
	at time.Time
}

type batchConnector struct {
	size, min int
	latency   time.Duration
	mu        sync.Mutex
	batches   []sentBatch
}

func (c *batchConnector) Connect(context.Context, Route, *config.EgressPath, *config.EgressSource) (Conn, error) {
	return &batchConn{c: c}, nil
}

func (c *batchConnector) sent() []sentBatch {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]sentBatch(nil), c.batches...)
}

type batchConn struct{ c *batchConnector }

func (b *batchConn) Send(ctx context.Context, m *message.Message) ([]RcptResponse, error) {
	out, err := b.SendBatch(ctx, []*message.Message{m})
	return out[0], err
}
func (b *batchConn) Batching() (int, int, time.Duration) { return b.c.size, b.c.min, b.c.latency }
func (b *batchConn) SendBatch(ctx context.Context, msgs []*message.Message) ([][]RcptResponse, error) {
	b.c.mu.Lock()
	b.c.batches = append(b.c.batches, sentBatch{len(msgs), time.Now()})
	b.c.mu.Unlock()
	out := make([][]RcptResponse, len(msgs))
	for i, m := range msgs {
		for _, r := range m.Recipients() {
			out[i] = append(out[i], RcptResponse{Recipient: r, Response: smtpreply.Response{Code: 200, Content: "ok"}})
		}
	}
	return out, nil
}
func (b *batchConn) Usable() bool { return true }
func (b *batchConn) Info() ConnInfo {
	return ConnInfo{PeerName: "Lua via test", DeliveryProtocol: "Lua"}
}
func (b *batchConn) Close() {}

func batchHarness(t *testing.T, bc *batchConnector) *harness {
	t.Helper()
	h := &harness{spool: &memSpool{ids: map[string]bool{}}, log: &recLog{},
		pol: &fakePolicy{cfg: config.DefaultQueueConfig(), path: config.DefaultEgressPath()}, gen: message.NewIDGenerator()}
	m, err := New(Options{Policy: h.pol, Spool: h.spool, Logger: h.log, Router: batchRouter{bc.size}, Connector: bc, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	m.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		m.Shutdown(ctx)
	})
	h.m = m
	return h
}

// TestBatchSizeAndLatency: batches never exceed batch_size, and a batch
// smaller than min_batch_size leaves only once max_batch_latency has
// passed.
func TestBatchSizeAndLatency(t *testing.T) {
	bc := &batchConnector{size: 10, min: 10, latency: 1500 * time.Millisecond}
	h := batchHarness(t, bc)
	start := time.Now()
	for range 25 {
		h.inject(t, "u")
	}
	waitFor(t, "25 deliveries", 10*time.Second, func() bool { return h.log.Count(logrecord.Delivery) == 25 })
	total := 0
	for _, b := range bc.sent() {
		total += b.n
		if b.n > 10 {
			t.Errorf("batch of %d exceeds batch_size 10", b.n)
		}
		if b.n < 10 && b.at.Sub(start) < 1400*time.Millisecond {
			t.Errorf("batch of %d sent after %v, before max_batch_latency", b.n, b.at.Sub(start))
		}
	}
	if total != 25 || len(bc.sent()) > 4 {
		t.Fatalf("batches %+v", bc.sent())
	}
	rec := h.log.All()[0]
	if rec.DeliveryProtocol != "Lua" || rec.PeerAddress == nil || rec.PeerAddress.Name != "Lua via test" {
		t.Fatalf("record %+v", rec)
	}
	if h.spool.len() != 0 {
		t.Fatalf("%d left in spool", h.spool.len())
	}
}

// TestBatchWithoutMinimumGoesAtOnce: min_batch_size 1 sends what is
// ready without waiting for the latency.
func TestBatchWithoutMinimumGoesAtOnce(t *testing.T) {
	bc := &batchConnector{size: 10, min: 1, latency: 10 * time.Second}
	h := batchHarness(t, bc)
	h.inject(t, "u")
	waitFor(t, "delivery well before the latency", 2*time.Second, func() bool { return h.log.Count(logrecord.Delivery) == 1 })
}
