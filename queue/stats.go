package queue

// QueueSizes counts the messages waiting per scheduled queue (in the
// timer heap, including those delayed for a retry) and per ready queue
// (by ready queue name, "source->site@smtp_client"). It is read by the
// metrics and the admin queue summaries; it takes the scheduler lock for
// one pass over the waiting messages.
func (m *Manager) QueueSizes() (scheduled, ready map[string]int) {
	scheduled = map[string]int{}
	m.mu.Lock()
	for _, e := range m.timers {
		scheduled[e.queue]++
	}
	rqs := make([]*readyQueue, 0, len(m.ready))
	for _, rq := range m.ready {
		rqs = append(rqs, rq)
	}
	m.mu.Unlock()
	ready = make(map[string]int, len(rqs))
	for _, rq := range rqs {
		rq.mu.Lock()
		n := len(rq.items) - rq.head
		rq.mu.Unlock()
		ready[rq.name] = n
	}
	return scheduled, ready
}
