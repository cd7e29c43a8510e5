package queue

import (
	"context"
	"sync"

	"github.com/kumogo/kumogo/internal/message"
)

// One commit for the mail and its records. A message accepted for a spool
// that supports staged writes (queue/spool's Stage and Commit) is staged
// by Spool, the listener logs its Reception record, and Insert joins a
// commit round that flushes the spool and syncs the records at the same
// time: one round of flushes, shared by every session waiting, makes both
// the message and its record durable before the 250, instead of the
// spool's group commit followed by the log's. The remover's syncs join the
// same rounds (durable.go), so deliveries and receptions share them too.

// StagedSpool is the optional part of Spool that splits a synchronous Save
// in two (implemented by queue/spool.Spools).
type StagedSpool interface {
	// Stage writes msg like Save(ctx, msg, true) except for the last
	// flush, which Commit does.
	Stage(ctx context.Context, msg *message.Message) error
	// Commit makes every message staged before the call durable.
	Commit(ctx context.Context) error
}

// SpoolError is the failure of the spool's commit in Insert: the message
// is not durable and must not be acknowledged. The listener answers it as
// a failed spool write.
type SpoolError struct{ Err error }

func (e *SpoolError) Error() string { return "spool commit: " + e.Err.Error() }
func (e *SpoolError) Unwrap() error { return e.Err }

// SpoolFailure tells the listener, which does not import this package,
// that the spool failed.
func (e *SpoolError) SpoolFailure() bool { return true }

// commitRound is one round: a spool commit (when a waiter staged a
// message) beside a Sync of the records. Waiters are woken when both end.
type commitRound struct {
	done  chan struct{}
	spool bool  // some waiter needs the spool's commit
	err   error // the spool commit's failure, set before done is closed
}

// groupCommit gathers the waiters of the next round. A committer
// goroutine runs while rounds are pending and exits when none is.
type groupCommit struct {
	mu      sync.Mutex
	next    *commitRound
	running bool
}

// staging reports whether Spool stages messages and Insert commits them.
func (m *Manager) staging() bool {
	return m.staged != nil && !m.o.NoSync
}

// commit returns once a round that started after the call has ended: the
// records logged before the call are synced (a failure there is reported,
// not returned: records, not mail) and, with spool, every message staged
// before the call is durable, or the spool's failure is returned.
func (m *Manager) commit(ctx context.Context, spool bool) error {
	g := &m.commits
	g.mu.Lock()
	r := g.next
	if r == nil {
		r = &commitRound{done: make(chan struct{})}
		g.next = r
	}
	r.spool = r.spool || spool
	if !g.running {
		g.running = true
		go m.committer()
	}
	g.mu.Unlock()
	select {
	case <-r.done:
		if spool && r.err != nil {
			return r.err
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// committer runs the pending rounds one after the other; waiters that
// arrive while a round runs join the next.
func (m *Manager) committer() {
	g := &m.commits
	for {
		g.mu.Lock()
		r := g.next
		g.next = nil
		if r == nil {
			g.running = false
			g.mu.Unlock()
			return
		}
		g.mu.Unlock()
		m.runRound(r)
		close(r.done)
	}
}

// runRound flushes the spool and syncs the records concurrently.
func (m *Manager) runRound(r *commitRound) {
	ctx, cancel := context.WithTimeout(context.Background(), syncTimeout)
	defer cancel()
	var serr error
	var wg sync.WaitGroup
	if r.spool && m.staged != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			serr = m.staged.Commit(ctx)
		}()
	}
	m.syncRecords(ctx)
	wg.Wait()
	if serr != nil {
		r.err = &SpoolError{Err: serr}
	}
}
