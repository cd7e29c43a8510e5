package queue

import (
	"container/heap"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/kumogo/kumogo/internal/config"
)

// idleManager is a Manager that is not started: nothing takes messages
// out of its timer heap but the test.
func idleManager(tb testing.TB) *Manager {
	tb.Helper()
	pol := &fakePolicy{cfg: config.DefaultQueueConfig(), path: config.DefaultEgressPath()}
	m, err := New(Options{Policy: pol, Spool: &memSpool{ids: map[string]bool{}}, Logger: &recLog{}, Router: &fakeRouter{},
		Connector: &fakeConnector{tries: map[string]int{}, script: ok250}, Log: zerolog.Nop()})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		m.Shutdown(ctx)
	})
	return m
}

// waitCompact schedules a compactly held message of queue q due at t.
func waitCompact(m *Manager, q string, t time.Time) *entry {
	e := &entry{queue: q, index: -1}
	m.schedule(e, t)
	return e
}

// checkHeap fails unless the timer heap is ordered, its indexes are right
// and the per-queue lists hold exactly its messages.
func checkHeap(t *testing.T, m *Manager) {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	h := m.timers
	for i, e := range h {
		if e.index != i {
			t.Fatalf("entry at %d has index %d", i, e.index)
		}
		if i > 0 && h.Less(i, (i-1)/2) {
			t.Fatalf("heap order broken at %d", i)
		}
	}
	listed := 0
	for q, n := range m.waiting {
		k := 0
		m.eachWaitingLocked(q, func(e *entry) {
			if e.queue != q || e.index < 0 || h[e.index] != e {
				t.Fatalf("queue %s lists an entry of %s at %d not in the heap", q, e.queue, e.index)
			}
			k++
		})
		if k != n {
			t.Fatalf("queue %s lists %d messages, counts %d", q, k, n)
		}
		listed += k
	}
	if listed != len(h) || len(m.waitHead) != len(m.waiting) {
		t.Fatalf("lists hold %d of %d messages (%d heads, %d counts)", listed, len(h), len(m.waitHead), len(m.waiting))
	}
}

// TestResumeLooksAtItsOwnQueue: a resume of a small queue looks at that
// queue's messages only, however many messages of other queues wait in
// the heap, and makes every one of them due now except those held by a
// suspension or constrained by set_scheduling; the others keep their
// times. With room for fewer, the earliest due go first.
func TestResumeLooksAtItsOwnQueue(t *testing.T) {
	for _, others := range []int{10, 50000} {
		t.Run(fmt.Sprint("others=", others), func(t *testing.T) {
			m := idleManager(t)
			later := time.Now().Add(time.Hour)
			var other []*entry
			for i := range others {
				other = append(other, waitCompact(m, fmt.Sprintf("o%d@x.example", i%97), later.Add(time.Duration(i)*time.Millisecond)))
			}
			var small []*entry
			for i := range 12 {
				small = append(small, waitCompact(m, "small@y.example", later.Add(time.Duration(12-i)*time.Second)))
			}
			held := waitCompact(m, "small@y.example", later)
			m.mu.Lock()
			held.held = true
			m.mu.Unlock()
			windowed := waitCompact(m, "small@y.example", later)
			windowed.windowed = true
			due := waitCompact(m, "small@y.example", time.Now().Add(-time.Second))
			checkHeap(t, m)

			// room for 5: 1 is due already, so the 4 earliest are woken
			before := time.Now()
			woken, pending := m.wakeWaiting(map[string]bool{"small@y.example": true}, 5)
			if woken != 4 || pending != 1 {
				t.Fatalf("woke %d with %d pending, want 4 and 1", woken, pending)
			}
			for i, e := range small {
				if wantDue := i >= 8; !e.due.After(before.Add(time.Minute)) != wantDue {
					t.Fatalf("small %d (due %v) woken: %v, want %v", i, e.due, !wantDue, wantDue)
				}
			}
			checkHeap(t, m)

			woken, pending = m.wakeWaiting(map[string]bool{"small@y.example": true}, -1)
			if woken != 8 || pending != 5 {
				t.Fatalf("woke %d with %d pending, want 8 and 5", woken, pending)
			}
			for i, e := range small {
				if e.due.After(time.Now()) {
					t.Fatalf("small %d not woken", i)
				}
			}
			if !held.due.Equal(later) || !windowed.due.Equal(later) {
				t.Fatal("a held or windowed message was woken")
			}
			if due.due.After(before) {
				t.Fatal("a due message was moved")
			}
			for i, e := range other {
				if !e.due.Equal(later.Add(time.Duration(i) * time.Millisecond)) {
					t.Fatalf("another queue's message %d moved", i)
				}
			}
			checkHeap(t, m)
			m.mu.Lock()
			looked := m.resumeLooked
			m.mu.Unlock()
			if looked != 2*15 {
				t.Fatalf("the resumes looked at %d messages, want %d (the small queue's, twice)", looked, 2*15)
			}
			// the heap still gives them out in order, and empties its lists
			m.mu.Lock()
			prev := time.Time{}
			for len(m.timers) > 0 {
				e := heap.Pop(&m.timers).(*entry)
				m.unwaitLocked(e)
				if e.due.Before(prev) {
					m.mu.Unlock()
					t.Fatal("out of order")
				}
				prev = e.due
			}
			n, heads := len(m.waiting), len(m.waitHead)
			m.mu.Unlock()
			if n != 0 || heads != 0 {
				t.Fatalf("%d counts and %d lists left in an empty heap", n, heads)
			}
		})
	}
}

// BenchmarkWakeWaiting: a resume's pass over a queue of 10 messages with
// the heap holding 1,000 or 100,000 messages of other queues.
func BenchmarkWakeWaiting(b *testing.B) {
	for _, others := range []int{1000, 100000} {
		b.Run(fmt.Sprint("others=", others), func(b *testing.B) {
			m := idleManager(b)
			later := time.Now().Add(time.Hour)
			for i := range others {
				waitCompact(m, fmt.Sprintf("o%d@x.example", i%97), later)
			}
			for range 10 {
				waitCompact(m, "small@y.example", later)
			}
			q := map[string]bool{"small@y.example": true}
			b.ResetTimer()
			for range b.N {
				m.wakeWaiting(q, 0) // room 0: looks, wakes none
			}
		})
	}
}
