package queue

// The timer heap's messages per scheduled queue. The heap orders every
// waiting message by its due time; a resume (resume.go) needs the waiting
// messages of a few scheduled queues, and looking for them in the whole
// heap under m.mu, every resumePoll while a resume runs, cost a pass over
// every queue's messages. Each scheduled queue with messages in the heap
// has a doubly linked list of them (through the entries, so an entry costs
// two pointers more and no allocation), kept with the count that the
// reaper and the queue sizes read (m.waiting).

// waitLocked counts e into the timer heap of its scheduled queue and
// links it into that queue's list. m.mu is held.
func (m *Manager) waitLocked(e *entry) {
	m.waiting[e.queue]++
	head := m.waitHead[e.queue]
	e.qprev, e.qnext = nil, head
	if head != nil {
		head.qprev = e
	}
	m.waitHead[e.queue] = e
}

// unwaitLocked counts e out of the timer heap of its scheduled queue and
// unlinks it. m.mu is held.
func (m *Manager) unwaitLocked(e *entry) {
	name := e.queue
	if n := m.waiting[name]; n > 1 {
		m.waiting[name] = n - 1
	} else {
		delete(m.waiting, name)
	}
	switch {
	case e.qprev != nil:
		e.qprev.qnext = e.qnext
	case m.waitHead[name] == e:
		if e.qnext == nil {
			delete(m.waitHead, name)
		} else {
			m.waitHead[name] = e.qnext
		}
	}
	if e.qnext != nil {
		e.qnext.qprev = e.qprev
	}
	e.qprev, e.qnext = nil, nil
}

// eachWaitingLocked calls f for every message of scheduled queue name in
// the timer heap; f must not add or remove messages. m.mu is held.
func (m *Manager) eachWaitingLocked(name string, f func(e *entry)) {
	for e := m.waitHead[name]; e != nil; e = e.qnext {
		f(e)
	}
}
