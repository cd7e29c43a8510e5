package queue

import (
	"container/heap"
	"time"
)

type entryHeap []*entry

func (h entryHeap) Len() int           { return len(h) }
func (h entryHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h entryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}
func (h *entryHeap) Push(x any) {
	e := x.(*entry)
	e.index = len(*h)
	*h = append(*h, e)
}
func (h *entryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	e.index = -1
	return e
}

// schedule puts e into the timer heap, due at t. Messages due later than
// compactAfter are held compactly (compact.go), so a long outage costs
// about a hundred bytes per message.
func (m *Manager) schedule(e *entry, t time.Time) {
	e.due = t
	if e.msg != nil && time.Until(t) > compactAfter {
		m.compact(e)
	}
	m.mu.Lock()
	e.queue = m.internQueue(e.queue)
	heap.Push(&m.timers, e)
	m.waitLocked(e)
	first := m.timers[0] == e
	m.mu.Unlock()
	if first {
		select {
		case m.wake <- struct{}{}:
		default:
		}
	}
}

// ScheduledCount returns the number of messages waiting in scheduled
// queues: due later (the timer heap), or due and waiting for their
// destination to be looked up.
func (m *Manager) ScheduledCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := len(m.timers)
	for _, sq := range m.sched {
		n += len(sq.parked)
	}
	return n
}

func (m *Manager) timerLoop() {
	defer m.wg.Done()
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		m.mu.Lock()
		var due []*entry
		now := time.Now()
		for len(m.timers) > 0 && !m.timers[0].due.After(now) {
			e := heap.Pop(&m.timers).(*entry)
			m.unwaitLocked(e)
			due = append(due, e)
		}
		wait := time.Hour
		if len(m.timers) > 0 {
			wait = m.timers[0].due.Sub(now)
		}
		m.mu.Unlock()
		for _, e := range due {
			m.promote(e)
		}
		t.Reset(wait)
		select {
		case <-m.ctx.Done():
			return
		case <-m.wake:
		case <-t.C:
		}
	}
}
