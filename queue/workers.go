package queue

import "time"

// Short background tasks of the Manager (the destination lookup of a new
// scheduled queue and the promotion of its parked messages, route.go) run
// on reused goroutines. A new destination costs get_egress_path_config,
// whose Lua call needs a deep stack: on a fresh goroutine that stack
// grows from its small start by copying, once per new destination (a
// third of the two config events' cost with ten thousand destinations).
// A worker that just ran such a task keeps its grown stack for the next
// one. There is no fixed pool: a task that finds no idle worker gets a new
// goroutine, so a lookup stuck on a slow resolver or a slow policy never
// holds another one up, and a worker idle for workerIdle ends.

// workerIdle is how long a worker waits for its next task before it ends.
const workerIdle = 5 * time.Second

// goTask runs f on an idle worker or on a new one. The caller holds m.mu
// and has checked that the Manager is not closed, so the wait group
// cannot be added to after Shutdown began waiting.
func (m *Manager) goTask(f func()) {
	select {
	case m.tasks <- f:
	default:
		m.wg.Add(1)
		go m.worker(f)
	}
}

// worker runs f, then the tasks handed to it, until it stays idle for
// workerIdle or the Manager stops.
func (m *Manager) worker(f func()) {
	defer m.wg.Done()
	var t *time.Timer
	for {
		f()
		if t == nil {
			t = time.NewTimer(workerIdle)
		} else {
			t.Reset(workerIdle)
		}
		select {
		case f = <-m.tasks:
		case <-t.C:
			return
		case <-m.ctx.Done():
			t.Stop()
			return
		}
	}
}
