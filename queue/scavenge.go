package queue

import "runtime/debug"

// Handing memory back to the OS after a large reap (reap.go). The Go
// runtime returns freed pages only gradually (minutes for hundreds of MB),
// so after thousands of queues went the reaper asks for it at once. The
// work (a forced GC and a scavenge, debug.FreeOSMemory) runs on a
// goroutine of the Manager's own, started by Start and waited for by
// Shutdown, never on the reaper (it would hold the next reap up) and
// never on a goroutine nobody waits for (it could outlive the Manager).
// Requests made while one is pending coalesce.

// requestScavenge asks the scavenger to return freed memory to the OS.
func (m *Manager) requestScavenge() {
	select {
	case m.scavenge <- struct{}{}:
	default: // one is pending already
	}
}

// scavenger serves requestScavenge until the Manager stops. A request
// still pending at shutdown is dropped: the process is about to end or
// another Manager to start.
func (m *Manager) scavenger() {
	defer m.wg.Done()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-m.scavenge:
		}
		if m.ctx.Err() != nil {
			return
		}
		m.freeOSMemory()
	}
}

// defaultFreeOSMemory is what the scavenger runs unless a test says
// otherwise.
func defaultFreeOSMemory() { debug.FreeOSMemory() }
