package queue

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/logrecord"
	"github.com/kumogo/kumogo/internal/message"
	"github.com/kumogo/kumogo/internal/smtpreply"
)

// countingPolicy counts get_queue_config calls and lets a test change the
// config the policy answers.
type countingPolicy struct {
	fakePolicy
	mu    sync.Mutex
	calls atomic.Int64
}

func (p *countingPolicy) GetQueueConfig(ctx context.Context, domain string, tenant, campaign, routing *string) (config.QueueConfig, error) {
	p.calls.Add(1)
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cfg, nil
}

func (p *countingPolicy) setConfig(c config.QueueConfig) {
	p.mu.Lock()
	p.cfg = c
	p.mu.Unlock()
}

type reapHarness struct {
	harness
	pol    *countingPolicy
	reaped chan string
}

func newReapHarness(t *testing.T, cfg config.QueueConfig, readyIdle time.Duration, script func(string, int) smtpreply.Response) *reapHarness {
	t.Helper()
	h := &reapHarness{harness: harness{spool: &memSpool{ids: map[string]bool{}}, log: &recLog{},
		conn: &fakeConnector{tries: map[string]int{}, script: script}, gen: message.NewIDGenerator()},
		pol: &countingPolicy{fakePolicy: fakePolicy{cfg: cfg, path: config.DefaultEgressPath()}}, reaped: make(chan string, 10000)}
	h.pol.path.IdleTimeout = 50 * time.Millisecond
	h.pol.path.MaxMessageRate = "100000/s" // a throttle per ready queue, to be forgotten
	m, err := New(Options{Policy: h.pol, Spool: h.spool, Logger: h.log, Router: &fakeRouter{}, Connector: h.conn, Log: zerolog.Nop(),
		ReadyQueueReapInterval: readyIdle, ReadyQueueReaped: func(name string) { h.reaped <- name }})
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

// send injects one message to user@domain.
func (h *reapHarness) send(t *testing.T, domain string) *message.Message {
	t.Helper()
	msg := message.New(h.gen, message.Address{User: "s", Domain: "x.com"}, []message.Address{{User: "u", Domain: domain}}, []byte("Subject: t\r\n\r\nbody\r\n"))
	ctx := context.Background()
	if err := h.m.Spool(ctx, msg, false); err != nil {
		t.Error(err)
		return msg
	}
	if err := h.m.Insert(ctx, msg); err != nil {
		t.Error(err)
	}
	return msg
}

// Queues that have been empty for their reap interval go, with their
// throttles and metrics series, and come back with a fresh
// get_queue_config when mail for them arrives again.
func TestReapIdleQueues(t *testing.T) {
	cfg := config.DefaultQueueConfig()
	cfg.ReapInterval = 300 * time.Millisecond
	cfg.MaxMessageRate = "100000/s"
	h := newReapHarness(t, cfg, 300*time.Millisecond, ok250)
	const n = 50
	for i := range n {
		h.send(t, fmt.Sprintf("d%d.example", i))
	}
	waitFor(t, "deliveries", 5*time.Second, func() bool { return h.log.Count(logrecord.Delivery) == n })
	if s, r := h.m.QueueCounts(); s != n || r != n {
		t.Fatalf("right after delivery: %d scheduled and %d ready queues, want %d each", s, r, n)
	}
	sched, ready := h.m.QueueSizes()
	if len(sched) != n || len(ready) != n || sched["d0.example"] != 0 {
		t.Fatalf("sizes of the empty queues not yet reaped: %d scheduled, %d ready", len(sched), len(ready))
	}
	if h.m.limits.LocalThrottles() < 2*n {
		t.Fatalf("%d local throttles, want the queues' and the paths' (%d)", h.m.limits.LocalThrottles(), 2*n)
	}
	waitFor(t, "the queues to be reaped", 5*time.Second, func() bool {
		s, r := h.m.QueueCounts()
		return s == 0 && r == 0
	})
	sched, ready = h.m.QueueSizes()
	if len(sched) != 0 || len(ready) != 0 {
		t.Fatalf("sizes after reaping: %v %v", sched, ready)
	}
	if k := h.m.limits.LocalThrottles(); k != 0 {
		t.Fatalf("%d local throttles outlived their queues", k)
	}
	if len(h.reaped) != n {
		t.Fatalf("%d ready queues reported reaped, want %d", len(h.reaped), n)
	}
	// mail again: the queue is made again with the policy's current config
	calls := h.pol.calls.Load()
	cfg.RetryInterval = 3 * time.Second
	h.pol.setConfig(cfg)
	h.send(t, "d0.example")
	waitFor(t, "the delivery after reaping", 5*time.Second, func() bool { return h.log.Count(logrecord.Delivery) == n+1 })
	if h.pol.calls.Load() == calls {
		t.Fatal("get_queue_config was not asked again for the reaped queue")
	}
	h.m.mu.Lock()
	sq := h.m.sched["d0.example"]
	h.m.mu.Unlock()
	if sq == nil || sq.cfg.RetryInterval != 3*time.Second {
		t.Fatalf("recreated queue %+v", sq)
	}
}

// A queue that still holds a message waiting for a retry is never reaped.
func TestReapKeepsQueueWithWaitingMessage(t *testing.T) {
	cfg := config.DefaultQueueConfig()
	cfg.ReapInterval = 0
	cfg.RetryInterval = time.Hour
	h := newReapHarness(t, cfg, time.Millisecond, func(string, int) smtpreply.Response {
		return smtpreply.Response{Code: 451, Content: "later"}
	})
	h.send(t, "wait.example")
	waitFor(t, "the transient failure", 5*time.Second, func() bool { return h.log.Count(logrecord.TransientFailure) == 1 })
	waitFor(t, "the ready queue to be reaped", 5*time.Second, func() bool { _, r := h.m.QueueCounts(); return r == 0 })
	h.m.reap(time.Now().Add(time.Hour))
	if s, _ := h.m.QueueCounts(); s != 1 {
		t.Fatalf("%d scheduled queues: the one with a waiting message was reaped", s)
	}
	if sched, _ := h.m.QueueSizes(); sched["wait.example"] != 1 {
		t.Fatalf("sizes %v", sched)
	}
}

// A message whose scheduled queue was reaped while it was being
// delivered is retried on the schedule of the policy's config (queue made
// again), not on the defaults (20 minutes).
func TestOutcomeAfterReapUsesPolicyConfig(t *testing.T) {
	cfg := config.DefaultQueueConfig()
	cfg.ReapInterval = 0 // reaped as soon as it is empty
	cfg.RetryInterval = 200 * time.Millisecond
	cfg.MaxRetryInterval = 200 * time.Millisecond
	release := make(chan struct{})
	var first atomic.Bool
	h := newReapHarness(t, cfg, time.Hour, func(_ string, attempt int) smtpreply.Response {
		if attempt == 0 {
			return smtpreply.Response{Code: 451, Content: "try later"}
		}
		return smtpreply.Response{Code: 250, Content: "ok"}
	})
	h.conn.onSend = func(*message.Message) {
		if first.CompareAndSwap(false, true) {
			<-release
		}
	}
	h.send(t, "inflight.example")
	waitFor(t, "the send to start", 5*time.Second, func() bool { return first.Load() })
	waitFor(t, "the scheduled queue to be reaped while its message is in flight", 5*time.Second, func() bool {
		s, _ := h.m.QueueCounts()
		return s == 0
	})
	close(release)
	waitFor(t, "the retry on the policy's 200 ms schedule", 5*time.Second, func() bool { return h.log.Count(logrecord.Delivery) == 1 })
}

// A ready queue reaped between its lookup and the push of a message is
// revived for it: the message is delivered and counted.
func TestPushToReapedReadyQueue(t *testing.T) {
	cfg := config.DefaultQueueConfig()
	h := newReapHarness(t, cfg, time.Hour, ok250)
	h.send(t, "r.example")
	waitFor(t, "delivery", 5*time.Second, func() bool { return h.log.Count(logrecord.Delivery) == 1 })
	h.m.mu.Lock()
	var rq *readyQueue
	for _, q := range h.m.ready {
		rq = q
	}
	h.m.mu.Unlock()
	waitFor(t, "the dispatcher to end", 5*time.Second, func() bool {
		rq.mu.Lock()
		defer rq.mu.Unlock()
		return rq.conns == 0
	})
	h.m.reap(time.Now().Add(2 * time.Hour))
	if _, r := h.m.QueueCounts(); r != 0 {
		t.Fatal("not reaped")
	}
	msg := message.New(h.gen, message.Address{User: "s", Domain: "x.com"}, []message.Address{{User: "v", Domain: "r.example"}}, []byte("Subject: t\r\n\r\nbody\r\n"))
	h.spool.Save(context.Background(), msg, false)
	rq.push(&entry{msg: msg, queue: msg.QueueName(), index: -1})
	waitFor(t, "delivery through the revived queue", 5*time.Second, func() bool { return h.log.Count(logrecord.Delivery) == 2 })
	if _, r := h.m.QueueCounts(); r != 1 {
		t.Fatalf("%d ready queues after the revival", r)
	}
	if sizes, _ := h.m.QueueSizes(); len(sizes) != 1 {
		t.Fatalf("scheduled sizes %v", sizes)
	}
}

// Reaping as fast as it can while messages arrive for a few domains: every
// message is delivered exactly once and the spool ends empty (run with
// -race).
func TestReapRaceNoLostMessage(t *testing.T) {
	cfg := config.DefaultQueueConfig()
	cfg.ReapInterval = 0
	h := newReapHarness(t, cfg, time.Nanosecond, ok250)
	stop := make(chan struct{})
	var reaps atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			h.m.reap(time.Now().Add(time.Hour))
			reaps.Add(1)
			time.Sleep(50 * time.Microsecond)
		}
	}()
	const senders, each = 8, 150
	var sent sync.WaitGroup
	for s := range senders {
		sent.Add(1)
		go func() {
			defer sent.Done()
			for i := range each {
				h.send(t, fmt.Sprintf("d%d.example", (s+i)%4))
				if i%10 == 0 {
					time.Sleep(time.Millisecond)
				}
			}
		}()
	}
	sent.Wait()
	waitFor(t, "every delivery", 20*time.Second, func() bool { return h.log.Count(logrecord.Delivery) >= senders*each })
	close(stop)
	wg.Wait()
	time.Sleep(100 * time.Millisecond)
	if d := h.log.Count(logrecord.Delivery); d != senders*each {
		t.Fatalf("%d deliveries, want %d", d, senders*each)
	}
	if n := h.spool.len(); n != 0 {
		t.Fatalf("%d messages left in the spool", n)
	}
	if reaps.Load() < 10 {
		t.Fatalf("only %d reaps ran", reaps.Load())
	}
	t.Logf("%d reaps, %d get_queue_config calls", reaps.Load(), h.pol.calls.Load())
}
