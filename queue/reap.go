package queue

import (
	"maps"
	"time"
)

// Reaping idle queues (KumoMTA's make_queue_config reap_interval page: a
// queue that stays empty and idle for reap_interval is removed "from the
// queue management layer" with "its associated resources and metrics").
// A scheduled queue is reaped once no message waits in it (timer heap,
// destination lookup) and it has not been used for its reap_interval; a
// ready queue once it holds no message, has no dispatcher and has been
// idle for ReadyQueueReapInterval (KumoMTA ages ready queues out after
// 10 minutes idle). Both are made again on demand, the scheduled queue
// with a fresh get_queue_config, the ready queue with a fresh egress path.
//
// Nothing is lost to a message that arrives while its queue is reaped: a
// scheduled queue only holds config and the resolved destination (the
// messages live in the Manager's timer heap, counted in waiting), and
// every use looks the queue up again or puts it back (routeOrPark); a
// ready queue is reaped under its own lock only when it is empty with no
// dispatcher, and a push that finds it reaped revives it or moves to the
// queue that replaced it (readyQueue.push).

// DefaultReadyQueueReapInterval is how long a ready queue stays idle
// before it is reaped when Options do not say.
const DefaultReadyQueueReapInterval = 10 * time.Minute

// largeReap is the number of reaped queue names (scheduled queues and
// the throttles of ready queues) after which memory is returned to the OS
// at once.
const largeReap = 3000

// reapPeriod bounds how often the reaper looks at the queues.
const (
	minReapPeriod = 100 * time.Millisecond
	maxReapPeriod = time.Minute
)

// reaper removes idle queues until the Manager stops.
func (m *Manager) reaper() {
	defer m.wg.Done()
	t := time.NewTimer(minReapPeriod)
	defer t.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-t.C:
		}
		t.Reset(m.reap(time.Now()))
	}
}

// reap removes the queues idle at now and returns when to look again:
// half the shortest reap interval, within [minReapPeriod, maxReapPeriod].
func (m *Manager) reap(now time.Time) time.Duration {
	next := m.o.ReadyQueueReapInterval
	forget := map[string]bool{}
	var readyReaped []string
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return maxReapPeriod
	}
	nsched, nready := len(m.sched), len(m.ready)
	for name, sq := range m.sched {
		if m.waiting[name] > 0 || len(sq.parked) > 0 || sq.resolving {
			next = min(next, sq.cfg.ReapInterval)
			continue
		}
		if now.Sub(sq.used) < sq.cfg.ReapInterval {
			next = min(next, sq.cfg.ReapInterval)
			continue
		}
		delete(m.sched, name)
		forget[queueRateKey(name)] = true
	}
	for name, rq := range m.ready {
		rq.mu.Lock()
		idle := rq.conns == 0 && len(rq.items) == rq.head && now.Sub(rq.used) >= m.o.ReadyQueueReapInterval
		if idle {
			rq.reaped = true
		}
		rq.mu.Unlock()
		if !idle {
			continue
		}
		delete(m.ready, name)
		readyReaped = append(readyReaped, name)
		for _, n := range readyLimitNames(name) {
			forget[n] = true
		}
	}
	// Go maps keep their buckets after deletes: after a large reap, copy
	// them so that the memory of thousands of gone queues comes back.
	if len(m.sched) < nsched/2 {
		m.sched = maps.Clone(m.sched)
	}
	if len(m.ready) < nready/2 {
		m.ready = maps.Clone(m.ready)
	}
	if len(m.waiting) == 0 {
		m.waiting = map[string]int{}
		m.waitHead = map[string]*entry{}
	}
	m.mu.Unlock()
	m.limits.Forget(forget)
	if len(forget) > 0 {
		m.log.Debug().Int("scheduled_reaped", len(forget)-3*len(readyReaped)).Int("ready_reaped", len(readyReaped)).Msg("reaped idle queues")
	}
	if len(forget) >= largeReap {
		// after thousands of queues went, give their memory back now so
		// that RSS shows the reap (scavenge.go); one forced GC per large
		// reap is cheap next to what was freed
		m.requestScavenge()
	}
	if m.o.ReadyQueueReaped != nil {
		for _, name := range readyReaped {
			m.o.ReadyQueueReaped(name)
		}
	}
	return min(max(next/2, minReapPeriod), maxReapPeriod)
}

// readyLimitNames are the names of the built-in throttles of a ready
// queue's egress path (shaping.go); the additional_* limits are named by
// the policy and shared between paths, so they are kept.
func readyLimitNames(rq string) []string {
	return []string{"kumomta.max_message_rate." + rq, "kumomta.max_connection_rate." + rq, "kumomta.source_selection_rate." + rq}
}

// revive returns the ready queue registered under rq's name, registering
// rq again when its reaping left none.
func (m *Manager) revive(rq *readyQueue) *readyQueue {
	m.mu.Lock()
	defer m.mu.Unlock()
	if cur := m.ready[rq.name]; cur != nil {
		return cur
	}
	rq.mu.Lock()
	rq.reaped = false
	rq.used = time.Now()
	rq.mu.Unlock()
	m.ready[rq.name] = rq
	return rq
}

// QueueCounts is the number of scheduled and ready queues that exist
// (empty ones not reaped yet included).
func (m *Manager) QueueCounts() (scheduled, ready int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.sched), len(m.ready)
}
