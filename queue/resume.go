package queue

import (
	"container/heap"
	"slices"
	"time"
)

// Resuming after an outage. A message whose delivery failed transiently
// waits for its own retry time: retry_interval doubled per attempt up to
// max_retry_interval (the log_hooks helper's 1 minute to 20 minutes). For
// an SMTP site that is KumoMTA's schedule and kumogo keeps it. For a
// route whose failures mean that one endpoint of the operator's own is
// down (a custom_lua webhook, a broker), it would make the backlog of an
// outage trickle back at the pace its retries happen to fall due, long
// after the endpoint came back. So, on such a route (ResumingRoute), the
// first delivery after transient failures makes the messages waiting in
// the scheduled queues that failed there due now, as fast as the ready
// queue takes them: batches of max_ready (the whole backlog at once when
// max_ready is 0), the next one once the ready queue is half empty, so
// that none is sent back to wait by a full ready queue. A new failure
// stops it; what is left keeps its own retry times. Messages held by a
// suspension, and messages whose set_scheduling constrains their times,
// are left alone.

// ResumingRoute is a Route whose waiting messages resume as soon as a
// delivery succeeds again after a failure (custom_lua).
type ResumingRoute interface {
	Route
	ResumesOnDelivery() bool
}

func routeResumes(r Route) bool {
	rr, ok := r.(ResumingRoute)
	return ok && rr.ResumesOnDelivery()
}

// resumeState is a ready queue's record of its failures, guarded by the
// ready queue's mu.
type resumeState struct {
	on       bool            // the route resumes (ResumingRoute)
	failed   map[string]bool // scheduled queues with a failure here since the last delivery
	failures uint64          // transient failures seen; a resume stops when it moves
	running  bool            // a resume goroutine runs
}

// noteRetry records a transient failure of a message of scheduled queue
// queue.
func (rq *readyQueue) noteRetry(queue string) {
	rq.mu.Lock()
	defer rq.mu.Unlock()
	r := &rq.resume
	if !r.on {
		return
	}
	r.failures++
	if r.failed == nil {
		r.failed = map[string]bool{}
	}
	r.failed[queue] = true
}

// noteDelivered records a delivery: after failures it starts the resume
// of the queues that failed.
func (rq *readyQueue) noteDelivered() {
	rq.mu.Lock()
	r := &rq.resume
	if !r.on || len(r.failed) == 0 || r.running {
		rq.mu.Unlock()
		return
	}
	queues := r.failed
	r.failed = nil
	r.running = true
	failures := r.failures
	rq.mu.Unlock()
	m := rq.m
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		rq.resumeQueues(queues, failures)
		rq.mu.Lock()
		rq.resume.running = false
		rq.mu.Unlock()
	}()
}

// resumePoll is how often a resume looks at the ready queue's length.
const resumePoll = 10 * time.Millisecond

// resumeQueues makes the waiting messages of queues due, max_ready at a
// time, until none is left, a failure is seen or the Manager stops.
func (rq *readyQueue) resumeQueues(queues map[string]bool, failures uint64) {
	m := rq.m
	t := time.NewTicker(resumePoll)
	defer t.Stop()
	for {
		rq.mu.Lock()
		maxReady := rq.path.MaxReady
		n := len(rq.items) - rq.head
		failed := rq.resume.failures != failures
		rq.mu.Unlock()
		if failed {
			return
		}
		room := -1 // no max_ready: all at once
		if maxReady > 0 {
			room = maxReady - n
		}
		// with max_ready, a batch once the ready queue is half empty
		if maxReady <= 0 || room >= (maxReady+1)/2 {
			if woken, pending := m.wakeWaiting(queues, room); woken == 0 && pending == 0 {
				return
			}
		}
		select {
		case <-m.ctx.Done():
			return
		case <-t.C:
		}
	}
}

// wakeWaiting makes up to room (all when negative) of the messages
// waiting in the timer heap for the scheduled queues in queues due now,
// earliest first, less those already due and not yet promoted. It returns
// how many it woke and how many of the queues' messages were due already.
// It visits only the messages of those queues (waitindex.go), however many
// other queues' messages wait in the heap.
func (m *Manager) wakeWaiting(queues map[string]bool, room int) (woken, pending int) {
	now := time.Now()
	m.mu.Lock()
	var picked []*entry
	for q := range queues {
		m.eachWaitingLocked(q, func(e *entry) {
			m.resumeLooked++
			if e.held || e.constrained() {
				return
			}
			if e.due.After(now) {
				picked = append(picked, e)
			} else {
				pending++
			}
		})
	}
	if room >= 0 {
		limit := max(room-pending, 0)
		if len(picked) > limit {
			// the earliest due first: the order their retries had
			slices.SortFunc(picked, func(a, b *entry) int { return a.due.Compare(b.due) })
			picked = picked[:limit]
		}
	}
	for _, e := range picked {
		e.due = now
	}
	switch {
	case len(picked) > len(m.timers)/8:
		heap.Init(&m.timers)
	default:
		// a few among many: each moves up to its place
		for _, e := range picked {
			heap.Fix(&m.timers, e.index)
		}
	}
	m.mu.Unlock()
	if len(picked) > 0 {
		select {
		case m.wake <- struct{}{}:
		default:
		}
	}
	return len(picked), pending
}

// constrained reports whether set_scheduling constrains e's times (a
// resume leaves it alone).
func (e *entry) constrained() bool {
	if e.msg != nil {
		return e.msg.Scheduling() != nil
	}
	return e.windowed
}
