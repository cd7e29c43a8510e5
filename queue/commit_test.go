package queue

import (
	"context"
	"errors"
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

// stagingSpool is a spool whose staged messages become durable only
// through Commit, as queue/spool's Spools.
type stagingSpool struct {
	memSpool
	mu      sync.Mutex
	staged  map[string]bool // staged, not yet committed
	durable map[string]bool
	commits atomic.Int64
	fail    atomic.Bool
	// syncing is the number of record Syncs in flight (overlapLog);
	// overlaps counts commits that ran while one was.
	syncing  *atomic.Int64
	overlaps atomic.Int64
}

func (s *stagingSpool) Stage(ctx context.Context, msg *message.Message) error {
	if err := s.memSpool.Save(ctx, msg, false); err != nil {
		return err
	}
	s.mu.Lock()
	s.staged[msg.ID()] = true
	s.mu.Unlock()
	return nil
}

func (s *stagingSpool) Commit(ctx context.Context) error {
	s.commits.Add(1)
	s.mu.Lock()
	batch := make([]string, 0, len(s.staged))
	for id := range s.staged {
		batch = append(batch, id)
	}
	s.mu.Unlock()
	// an fsync of 3 ms, watching for a record Sync (2 ms) running beside
	// it: one started with this commit is seen, one run before or after
	// it is not
	seen := false
	for end := time.Now().Add(3 * time.Millisecond); time.Now().Before(end); time.Sleep(250 * time.Microsecond) {
		seen = seen || s.syncing.Load() > 0
	}
	if seen {
		s.overlaps.Add(1)
	}
	if s.fail.Load() {
		return errors.New("WAL sync: input/output error")
	}
	s.mu.Lock()
	for _, id := range batch {
		delete(s.staged, id)
		s.durable[id] = true
	}
	s.mu.Unlock()
	return nil
}

func (s *stagingSpool) isDurable(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.durable[id]
}

// overlapLog counts the record Syncs in flight.
type overlapLog struct {
	*syncLog
	syncing *atomic.Int64
}

func (l overlapLog) Sync(ctx context.Context) error {
	l.syncing.Add(1)
	defer l.syncing.Add(-1)
	return l.syncLog.Sync(ctx)
}

func newStagingManager(t *testing.T) (*Manager, *stagingSpool, *syncLog) {
	t.Helper()
	lg := &syncLog{last: map[string]int{}, recv: map[string]int{}}
	var syncing atomic.Int64
	sp := &stagingSpool{memSpool: memSpool{ids: map[string]bool{}}, staged: map[string]bool{}, durable: map[string]bool{}, syncing: &syncing}
	conn := &fakeConnector{tries: map[string]int{}, script: func(string, int) smtpreply.Response {
		return smtpreply.Response{Code: 250, Content: "ok"}
	}}
	pol := &fakePolicy{cfg: config.DefaultQueueConfig(), path: config.DefaultEgressPath()}
	m, err := New(Options{Policy: pol, Spool: sp, Logger: overlapLog{lg, &syncing}, Router: &fakeRouter{}, Connector: conn, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	return m, sp, lg
}

// TestInsertCommitsMessageAndRecordTogether: with a spool that stages,
// Insert returns only once the message and its Reception record are both
// durable, the spool's commit and the records' Sync run in the same round
// (concurrently, not one after the other), and concurrent Inserts share
// rounds.
func TestInsertCommitsMessageAndRecordTogether(t *testing.T) {
	m, sp, lg := newStagingManager(t)
	m.Start()
	gen := message.NewIDGenerator()
	const workers, each = 10, 20
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				msg := message.New(gen, message.Address{User: "s", Domain: "x.com"}, []message.Address{{User: fmt.Sprintf("u%d-%d", w, i), Domain: "example.com"}}, []byte("Subject: t\r\n\r\nbody\r\n"))
				ctx := context.Background()
				if err := m.Spool(ctx, msg, false); err != nil {
					t.Error(err)
					return
				}
				if sp.isDurable(msg.ID()) {
					t.Errorf("Spool made %s durable: the commit is Insert's", msg.ID())
				}
				lg.Log(&logrecord.Record{Type: logrecord.Reception}, msg) // as the listener does
				if err := m.Insert(ctx, msg); err != nil {
					t.Error(err)
					return
				}
				if !sp.isDurable(msg.ID()) {
					t.Errorf("Insert returned before %s was committed to the spool", msg.ID())
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
	n := int64(workers * each)
	if c := sp.commits.Load(); c >= n/2 {
		t.Fatalf("%d spool commits for %d messages: rounds are not shared", c, n)
	}
	if sp.overlaps.Load() == 0 {
		t.Fatal("the spool's commit never ran while the records were being synced: one waits for the other")
	}
	if sp.saves.Load() != n {
		t.Fatalf("%d writes for %d messages", sp.saves.Load(), n)
	}
}

// TestInsertFailsWhenSpoolCommitFails: a failed commit is a failed spool
// write, never a 250: Insert returns an error the listener recognises and
// the message is not queued.
func TestInsertFailsWhenSpoolCommitFails(t *testing.T) {
	m, sp, lg := newStagingManager(t)
	m.Start()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = m.Shutdown(ctx)
	}()
	sp.fail.Store(true)
	gen := message.NewIDGenerator()
	msg := message.New(gen, message.Address{User: "s", Domain: "x.com"}, []message.Address{{User: "u", Domain: "example.com"}}, []byte("Subject: t\r\n\r\nbody\r\n"))
	ctx := context.Background()
	if err := m.Spool(ctx, msg, false); err != nil {
		t.Fatal(err)
	}
	lg.Log(&logrecord.Record{Type: logrecord.Reception}, msg)
	err := m.Insert(ctx, msg)
	var sf interface{ SpoolFailure() bool }
	if err == nil || !errors.As(err, &sf) || !sf.SpoolFailure() {
		t.Fatalf("Insert after a failed commit: %v, want a spool failure", err)
	}
	// the queue itself may exist (Spool made it; empty until reaped)
	sched, ready := m.QueueSizes()
	for name, n := range sched {
		if n != 0 {
			t.Fatalf("a message whose commit failed was queued in %s: %v", name, sched)
		}
	}
	for name, n := range ready {
		if n != 0 {
			t.Fatalf("a message whose commit failed is ready in %s: %v", name, ready)
		}
	}
}
