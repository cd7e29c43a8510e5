package smtpd

import (
	"context"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"
)

// bodyBudget bounds the memory that message bodies being received hold
// across a listener, whatever the number of sessions: without it the peak
// is max_message_size times the number of connections. A body reserves
// bytes from the budget as its buffer grows (in steps that follow the
// buffer's own growth) and gives them back once the DATA or last BDAT has
// been answered. A body that cannot start for want of budget waits, up to
// client_timeout, for other bodies to finish (the client meanwhile waits
// on TCP flow control). A body that has started and cannot grow waits at
// most growWait: bodies that hold part of the budget and wait for more
// could otherwise wait on each other. A body that gets no room is read to
// its end and dropped, and the client gets a 451; the session goes on.
type bodyBudget struct {
	sem   *semaphore.Weighted
	limit int64
	used  atomic.Int64
	peak  atomic.Int64
	waits atomic.Int64
}

// DefaultBodyMemory is the default budget of a listener's bodies in
// flight; it is raised to twice max_message_size when that is larger.
const DefaultBodyMemory = 1 << 30

// growWait bounds the wait of a body that holds budget and needs more.
const growWait = time.Second

// firstReserve is what a body reserves when it starts: the size of the
// buffer every body starts in.
const firstReserve = smallBuf

func newBodyBudget(limit, maxMessage int64) *bodyBudget {
	if limit <= 0 {
		limit = DefaultBodyMemory
	}
	if limit < 2*maxMessage {
		limit = 2 * maxMessage
	}
	if limit < 4*largeBuf {
		limit = 4 * largeBuf
	}
	return &bodyBudget{sem: semaphore.NewWeighted(limit), limit: limit}
}

// acquire reserves n bytes, waiting at most wait. It reports false when
// the budget stayed spent.
func (b *bodyBudget) acquire(n int64, wait time.Duration) bool {
	if n > b.limit {
		return false
	}
	if !b.sem.TryAcquire(n) {
		b.waits.Add(1)
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		err := b.sem.Acquire(ctx, n)
		cancel()
		if err != nil {
			return false
		}
	}
	u := b.used.Add(n)
	for p := b.peak.Load(); u > p && !b.peak.CompareAndSwap(p, u); p = b.peak.Load() {
	}
	return true
}

func (b *bodyBudget) release(n int64) {
	if n > 0 {
		b.used.Add(-n)
		b.sem.Release(n)
	}
}

// bodyReservation is one body's share of the budget.
type bodyReservation struct {
	b    *bodyBudget
	held int64
}

// ensure makes the reservation cover size bytes. It reports false when
// the budget could not give that much within wait.
func (r *bodyReservation) ensure(size int64, wait time.Duration) bool {
	if size <= r.held {
		return true
	}
	n := size - r.held
	if !r.b.acquire(n, wait) {
		return false
	}
	r.held += n
	return true
}

func (r *bodyReservation) done() {
	r.b.release(r.held)
	r.held = 0
}

// BodyMemory reports the body bytes reserved now, the most ever reserved
// at once, the budget, and how many reservations had to wait.
func (s *Server) BodyMemory() (used, peak, limit, waits int64) {
	b := s.budget
	return b.used.Load(), b.peak.Load(), b.limit, b.waits.Load()
}
