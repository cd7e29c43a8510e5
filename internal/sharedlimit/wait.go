package sharedlimit

import (
	"context"
	"math/rand/v2"
	"time"
)

// Waiting for a connection slot. A shared limit that is full frees a slot
// when a holder on any node releases one, which this process only learns
// by asking Redis again. Without coordination every waiting dispatcher of
// a node asked on its own every 50–100 ms, so that with three nodes sharing
// one budget the failed asks could outnumber the messages delivered. A
// gate per limit name coordinates the waiters of one process: once the
// limit is found full (a refusal, or taking the last slot) nobody here
// asks for one poll interval, then a single waiter asks for all of them,
// and a release in this process lets one ask at once. While the limit is
// not known to be full, asks run concurrently as before. The shared budget
// is never exceeded by this: only "full" is remembered, never "free".

// pollInterval is how long a limit found full is taken as full before one
// waiter of this process asks again: 50–100 ms, jittered so that the
// nodes' asks spread out.
func pollInterval() time.Duration {
	return 50*time.Millisecond + rand.N(50*time.Millisecond)
}

// gate coordinates the waiters of one limit in this process; the Store's
// mu guards it (it is touched once per connection, not per message).
type gate struct {
	users int // waiters holding the gate

	// full is set while the limit is known to be full: nobody asks before
	// fullUntil, and then one waiter at a time (probing) until an ask
	// finds room again. changed is closed (and replaced) whenever the
	// state changes.
	full      bool
	fullUntil time.Time
	probing   bool
	changed   chan struct{}
}

// openGate returns the gate of name, made when nobody holds it.
func (s *Store) openGate(name string) *gate {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.gates[name]
	if g == nil {
		g = &gate{changed: make(chan struct{})}
		s.gates[name] = g
	}
	g.users++
	return g
}

// closeGate lets go of the gate of name; the last user drops it.
func (s *Store) closeGate(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if g := s.gates[name]; g != nil {
		if g.users--; g.users <= 0 {
			delete(s.gates, name)
		}
	}
}

// freed notes that this process released a slot of name: its waiters may
// ask at once.
func (s *Store) freed(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if g := s.gates[name]; g != nil && g.full {
		// a slot is free here now: one waiter may ask at once
		g.fullUntil = time.Time{}
		g.broadcastLocked()
	}
}

// broadcastLocked wakes the gate's waiters; s.mu is held.
func (g *gate) broadcastLocked() {
	close(g.changed)
	g.changed = make(chan struct{})
}

// wait blocks until the limit may be asked: it is not known to be full,
// or its poll interval is over and nobody here is asking. false when ctx
// ended.
func (s *Store) wait(ctx context.Context, g *gate) bool {
	for {
		s.mu.Lock()
		now := time.Now()
		if !g.full || (!g.probing && !now.Before(g.fullUntil)) {
			s.mu.Unlock()
			return true
		}
		ch := g.changed
		var t *time.Timer
		var timer <-chan time.Time
		if !g.probing {
			t = time.NewTimer(g.fullUntil.Sub(now))
			timer = t.C
		}
		s.mu.Unlock()
		select {
		case <-ch:
		case <-timer:
		case <-ctx.Done():
		}
		if t != nil {
			t.Stop()
		}
		if ctx.Err() != nil {
			return false
		}
	}
}

// try takes a slot of l through its gate g. For a limit known to be full
// it returns nil at once within the poll interval, and afterwards lets one
// waiter ask while the others wait for that answer; otherwise it asks.
func (s *Store) try(ctx context.Context, g *gate, l Limit) *Lease {
	for {
		s.mu.Lock()
		if g.full && time.Now().Before(g.fullUntil) {
			s.mu.Unlock()
			return nil
		}
		if g.full && g.probing {
			ch := g.changed
			s.mu.Unlock()
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return nil
			}
		}
		probe := g.full
		g.probing = probe
		s.mu.Unlock()
		lease, full := s.acquire(ctx, l)
		s.mu.Lock()
		if probe {
			g.probing = false
		}
		switch {
		case full:
			g.full, g.fullUntil = true, time.Now().Add(s.poll())
		case lease != nil:
			g.full = false
		}
		g.broadcastLocked()
		s.mu.Unlock()
		return lease
	}
}

// AcquireAllWait takes one slot of each limit, waiting while one of them
// is full, and returns the leases; false when ctx ended first. As with
// AcquireAll, limits are taken in order and no slot is held while waiting
// for another limit. The waiters of one process ask for a full limit one
// at a time, once per 50–100 ms, or at once when this process releases a
// slot of it.
func (s *Store) AcquireAllWait(ctx context.Context, limits []Limit) ([]*Lease, bool) {
	gates := make([]*gate, len(limits))
	for i, l := range limits {
		gates[i] = s.openGate(l.Name)
	}
	defer func() {
		for _, l := range limits {
			s.closeGate(l.Name)
		}
	}()
	blocked := -1
	for {
		if blocked >= 0 && !s.wait(ctx, gates[blocked]) {
			return nil, false
		}
		leases := make([]*Lease, 0, len(limits))
		blocked = -1
		for i, l := range limits {
			lease := s.try(ctx, gates[i], l)
			if lease == nil {
				blocked = i
				break
			}
			leases = append(leases, lease)
		}
		if blocked < 0 {
			return leases, true
		}
		for _, l := range leases {
			l.Release()
		}
		if ctx.Err() != nil {
			return nil, false
		}
	}
}
