package queue

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/logrecord"
	"github.com/kumogo/kumogo/internal/message"
	"github.com/kumogo/kumogo/internal/smtpreply"
)

// syncLog is a record log whose records become durable only through Sync;
// the spool beside it checks that a message leaves only once its records
// are durable.
type syncLog struct {
	recLog
	mu      sync.Mutex
	seq     int            // records logged
	durable int            // records covered by a finished Sync
	last    map[string]int // id → seq of its latest record
	recv    map[string]int // id → seq of its Reception record
	syncs   int
}

func (l *syncLog) Log(rec *logrecord.Record, msg *message.Message) {
	l.recLog.Log(rec, msg)
	id := rec.ID
	if id == "" && msg != nil {
		id = msg.ID()
	}
	l.mu.Lock()
	l.seq++
	l.last[id] = l.seq
	if rec.Type == logrecord.Reception {
		l.recv[id] = l.seq
	}
	l.mu.Unlock()
}

func (l *syncLog) Sync(ctx context.Context) error {
	l.mu.Lock()
	upTo := l.seq
	l.mu.Unlock()
	time.Sleep(2 * time.Millisecond) // an fsync
	l.mu.Lock()
	if upTo > l.durable {
		l.durable = upTo
	}
	l.syncs++
	l.mu.Unlock()
	return nil
}

func (l *syncLog) receptionDurable(id string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.recv[id] != 0 && l.recv[id] <= l.durable
}

func (l *syncLog) isDurable(id string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last[id] != 0 && l.last[id] <= l.durable
}

type checkingSpool struct {
	memSpool
	log        *syncLog
	mu         sync.Mutex
	violations []string
}

func (s *checkingSpool) Remove(ctx context.Context, id string) error {
	if !s.log.isDurable(id) {
		s.mu.Lock()
		s.violations = append(s.violations, id)
		s.mu.Unlock()
	}
	return s.memSpool.Remove(ctx, id)
}

// TestRecordsDurableBeforeAckAndRemoval: Insert returns only once the
// Reception record logged before it is synced, and a finished message
// leaves the spool only once its Delivery or Bounce record is synced; the
// removals share Syncs.
func TestRecordsDurableBeforeAckAndRemoval(t *testing.T) {
	lg := &syncLog{last: map[string]int{}, recv: map[string]int{}}
	sp := &checkingSpool{memSpool: memSpool{ids: map[string]bool{}}, log: lg}
	conn := &fakeConnector{tries: map[string]int{}, script: func(u string, _ int) smtpreply.Response {
		if u[0] == 'b' {
			return smtpreply.Response{Code: 550, Content: "no"}
		}
		return smtpreply.Response{Code: 250, Content: "ok"}
	}}
	pol := &fakePolicy{cfg: config.DefaultQueueConfig(), path: config.DefaultEgressPath()}
	m, err := New(Options{Policy: pol, Spool: sp, Logger: lg, Router: &fakeRouter{}, Connector: conn, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	m.Start()
	gen := message.NewIDGenerator()
	const n = 200
	var wg sync.WaitGroup
	for w := 0; w < 10; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < n/10; i++ {
				user := fmt.Sprintf("d%d-%d", w, i)
				if i%4 == 0 {
					user = "b" + user
				}
				msg := message.New(gen, message.Address{User: "s", Domain: "x.com"}, []message.Address{{User: user, Domain: "example.com"}}, []byte("Subject: t\r\n\r\nbody\r\n"))
				ctx := context.Background()
				if err := m.Spool(ctx, msg, false); err != nil {
					t.Error(err)
					return
				}
				lg.Log(&logrecord.Record{Type: logrecord.Reception}, msg) // as the listener does
				if err := m.Insert(ctx, msg); err != nil {
					t.Error(err)
					return
				}
				if !lg.receptionDurable(msg.ID()) {
					t.Errorf("Insert returned before the Reception record of %s was synced", msg.ID())
				}
			}
		}(w)
	}
	wg.Wait()
	waitFor(t, "every message out of the spool", 10*time.Second, func() bool { return sp.len() == 0 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if d, b := lg.Count(logrecord.Delivery), lg.Count(logrecord.Bounce); d+b != n || b != n/4 {
		t.Fatalf("%d deliveries, %d bounces", d, b)
	}
	if len(sp.violations) > 0 {
		t.Fatalf("%d messages left the spool before their record was synced, e.g. %s", len(sp.violations), sp.violations[0])
	}
	if lg.syncs >= 2*n {
		t.Fatalf("%d Syncs for %d messages: receptions and removals do not share them", lg.syncs, n)
	}
}

type prefixClassifier map[string]string

func (p prefixClassifier) Classify(resp string) string {
	for prefix, class := range p {
		if len(resp) >= len(prefix) && resp[:len(prefix)] == prefix {
			return class
		}
	}
	return "Uncategorized"
}

// TestBounceClassification: Bounce and TransientFailure records carry the
// classifier's class of "<code> <x.y.z> <text>"; Delivery records do not.
func TestBounceClassification(t *testing.T) {
	h := newHarness(t, config.DefaultQueueConfig(), func(u string, _ int) smtpreply.Response {
		switch u {
		case "gone":
			return smtpreply.Response{Code: 550, Enhanced: &smtpreply.EnhancedCode{Class: 5, Subject: 1, Detail: 1}, Content: "no such user"}
		case "full":
			return smtpreply.Response{Code: 452, Enhanced: &smtpreply.EnhancedCode{Class: 4, Subject: 2, Detail: 2}, Content: "mailbox full"}
		}
		return smtpreply.Response{Code: 250, Content: "ok"}
	})
	h.m.o.Classifier = prefixClassifier{"550 5.1.1 ": "InvalidRecipient", "452 4.2.2 ": "QuotaIssues", "250": "Wrong"}
	h.inject(t, "gone")
	h.inject(t, "full")
	h.inject(t, "fine")
	waitFor(t, "three outcomes", 5*time.Second, func() bool {
		return h.log.Count(logrecord.Bounce) == 1 && h.log.Count(logrecord.TransientFailure) == 1 && h.log.Count(logrecord.Delivery) == 1
	})
	for _, r := range h.log.All() {
		want := map[logrecord.Type]string{logrecord.Bounce: "InvalidRecipient", logrecord.TransientFailure: "QuotaIssues", logrecord.Delivery: ""}[r.Type]
		if r.BounceClassification != want {
			t.Errorf("%s record classified %q, want %q", r.Type, r.BounceClassification, want)
		}
	}
}
