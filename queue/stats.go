package queue

// QueueSizes counts the messages waiting per scheduled queue (due later,
// including those delayed for a retry, or due and waiting for their
// destination to be looked up) and per ready queue (by ready queue name,
// "source->site@smtp_client"). Every queue that exists is listed, an empty
// one with 0 until it is reaped (reap.go), as KumoMTA keeps a queue's
// gauges for as long as the queue lives. It is read by the metrics and
// the admin queue summaries; its cost grows with the number of queues,
// not of messages.
func (m *Manager) QueueSizes() (scheduled, ready map[string]int) {
	m.mu.Lock()
	scheduled = make(map[string]int, len(m.sched))
	for name, sq := range m.sched {
		scheduled[name] = len(sq.parked)
	}
	for name, n := range m.waiting {
		scheduled[name] += n
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
