package queue

import (
	"errors"
	"fmt"
	"time"

	"github.com/kumogo/kumogo/internal/logrecord"
	"github.com/kumogo/kumogo/internal/smtpreply"
)

// A scheduled queue's destination (MX lookup, or the mx_list) is resolved
// when its messages are handed to a ready queue, as KumoMTA does, and never
// at reception: the 250 depends on the policy and the spool only, so a slow
// or dead resolver cannot hold a client. Messages that become due while a
// lookup runs are parked on their scheduled queue and promoted again when
// it ends. A resolved route is reused for ConfigTTL and then looked up
// again in the background while the old one keeps serving (the resolver
// caches answers by their TTL, so that costs nothing while they are fresh).

// routeOrPark returns the route of sq for e, or nil after parking e on sq
// (starting a lookup if none runs).
func (m *Manager) routeOrPark(sq *schedQueue, e *entry) Route {
	m.mu.Lock()
	defer m.mu.Unlock()
	// the config may have been refreshed since sq was looked up: the
	// queue object in the map holds the state
	cur := m.sched[sq.name]
	if cur == nil {
		// reaped since the caller looked it up (reap.go): back it goes
		cur = sq
		cur.used = time.Now()
		m.sched[sq.name] = sq
	}
	fresh := cur.route != nil && time.Since(cur.routed) < m.o.ConfigTTL
	if !fresh && !cur.resolving && !m.closed {
		cur.resolving = true
		name := cur.name
		m.goTask(func() { m.resolve(name) }) // workers.go
	}
	if cur.route != nil {
		return cur.route
	}
	cur.parked = append(cur.parked, e)
	return nil
}

// resolve looks up the destination of the named scheduled queue, stores
// it and promotes the messages parked meanwhile. A failed lookup fails
// those messages (a bounce for a permanent answer such as a null MX,
// otherwise a transient failure retried on the queue's schedule) and the
// next promotion looks up again.
func (m *Manager) resolve(name string) {
	m.mu.Lock()
	sq := m.sched[name]
	m.mu.Unlock()
	if sq == nil {
		return
	}
	routingDomain := sq.parts.Domain
	if sq.parts.HasRoutingDomain {
		routingDomain = sq.parts.RoutingDomain
	}
	route, err := m.o.Router.Route(m.ctx, routingDomain, &sq.cfg.Protocol)
	m.mu.Lock()
	// the config may have been refreshed meanwhile: the current queue
	// object holds the state
	if cur := m.sched[name]; cur != nil {
		sq = cur
	}
	sq.resolving = false
	if err == nil {
		sq.route, sq.routed = route, time.Now()
	}
	parked := sq.parked
	sq.parked = nil
	m.mu.Unlock()
	if m.ctx.Err() != nil {
		return // shutting down: parked messages stay in the spool
	}
	if err != nil {
		if sq.route != nil {
			// a refresh failed: keep serving the last good route
			m.log.Warn().Err(err).Str("queue", name).Msg("looking up the destination again failed; keeping the previous one")
			for _, e := range parked {
				m.promote(e)
			}
			return
		}
		for _, e := range parked {
			m.routeFailed(e, sq, err)
		}
		return
	}
	for _, e := range parked {
		m.promote(e)
	}
}

// routeFailed records a failed destination lookup for e.
func (m *Manager) routeFailed(e *entry, sq *schedQueue, err error) {
	if !m.need(e) {
		return
	}
	var re *smtpreply.Error
	if errors.As(err, &re) && re.Response.Code >= 500 {
		m.finish(e, sq, nil, nil, logrecord.Bounce, re.Response, e.msg.Recipients())
		return
	}
	resp := smtpreply.Response{Code: 451, Enhanced: &smtpreply.EnhancedCode{Class: 4, Subject: 4, Detail: 4},
		Content: fmt.Sprintf("failed to resolve queue %s: %v", e.queue, err)}
	if errors.As(err, &re) {
		resp = re.Response
	}
	m.transient(e, sq, nil, resp, "")
}

// ParkedCount is the number of messages waiting in their scheduled queue
// for its destination to be looked up.
func (m *Manager) ParkedCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, sq := range m.sched {
		n += len(sq.parked)
	}
	return n
}
