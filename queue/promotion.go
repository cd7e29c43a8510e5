package queue

import (
	"context"
	"fmt"
	"time"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/message"
	"github.com/kumogo/kumogo/internal/smtpreply"
)

// promote moves a due message to the ready queue of its egress path.
func (m *Manager) promote(e *entry) {
	// A compactly held message (compact.go) is read from the spool only
	// once it has a place in a ready queue, or when a step needs it (need),
	// so that messages sent back by a full ready queue cost no reads.
	ctx := m.ctx
	if m.adminIntercept(e, "") {
		return // bounced or suspended by an administrator (admin.go)
	}
	if e.queue == message.DeferredInjectQueue {
		if m.need(e) {
			m.deferredInject(e)
		}
		return
	}
	sq, err := m.schedQueue(ctx, e.queue)
	if err != nil {
		if !m.need(e) {
			return
		}
		m.transient(e, nil, nil, smtpreply.Response{Code: 451, Enhanced: &smtpreply.EnhancedCode{Class: 4, Subject: 4, Detail: 4},
			Content: fmt.Sprintf("failed to resolve queue %s: %v", e.queue, err)}, "")
		return
	}
	route := m.routeOrPark(sq, e)
	if route == nil {
		return // parked in its scheduled queue until the lookup ends
	}
	if sq.rate != nil {
		if r := m.limits.Throttle(ctx, queueRateKey(sq.name), *sq.rate); r.Throttled {
			// max_message_rate: try again when a slot frees, attempts unchanged
			m.schedule(e, time.Now().Add(r.RetryAfter))
			return
		}
	}
	if m.throttleEvent(e) {
		return
	}
	rq, until, gen, err := m.selectReadyQueue(ctx, sq, route)
	if err != nil {
		if !m.need(e) {
			return
		}
		m.transient(e, sq, nil, smtpreply.Response{Code: 451, Enhanced: &smtpreply.EnhancedCode{Class: 4, Subject: 4, Detail: 4},
			Content: fmt.Sprintf("failed to resolve queue %s: %v", e.queue, err)}, "")
		return
	}
	if rq == nil {
		if !until.IsZero() {
			m.holdForReadyQueue(e, until, gen) // every ready queue is suspended
			return
		}
		if m.need(e) {
			m.noEligibleSource(e, sq)
		}
		return
	}
	if rq.full() {
		// max_ready: back to the scheduled queue with up to 60 s of jitter
		m.mu.Lock()
		d := time.Duration(m.rnd.Int64N(int64(60 * time.Second)))
		m.mu.Unlock()
		m.undefer(ctx, e.msg)
		m.schedule(e, time.Now().Add(d))
		return
	}
	if !m.need(e) {
		return
	}
	rq.push(e)
}

// pickSource chooses the next egress source of the queue's pool by
// weighted round robin.
func (m *Manager) pickSource(sq *schedQueue) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	total := 0
	for _, en := range sq.pool.Entries {
		if en.Weight > 0 {
			total += en.Weight
		}
	}
	if total == 0 {
		return "unspecified"
	}
	pos := sq.rr % total
	sq.rr++
	for _, en := range sq.pool.Entries {
		if en.Weight <= 0 {
			continue
		}
		if pos < en.Weight {
			return en.Name
		}
		pos -= en.Weight
	}
	return sq.pool.Entries[0].Name
}

// readyQueue finds or creates the ready queue for (source, site).
func (m *Manager) readyQueue(ctx context.Context, sq *schedQueue, route Route, source string) (*readyQueue, error) {
	site := route.Site()
	name := source + "->" + site + "@smtp_client"
	m.mu.Lock()
	rq := m.ready[name]
	m.mu.Unlock()
	epoch := m.policyEpoch()
	if rq != nil && rq.current(epoch) {
		return rq, nil
	}
	src := config.EgressSource{Name: "unspecified"}
	if source != "unspecified" {
		var err error
		if src, err = m.o.Policy.GetEgressSource(ctx, source); err != nil {
			return nil, fmt.Errorf("egress source %s: %w", source, err)
		}
	}
	routingDomain := sq.parts.Domain
	if sq.parts.HasRoutingDomain {
		routingDomain = sq.parts.RoutingDomain
	}
	path, err := m.o.Policy.GetEgressPathConfig(ctx, routingDomain, source, site)
	if err != nil {
		return nil, fmt.Errorf("egress path: %w", err)
	}
	m.noteUnimplemented("make_egress_path", path.Unimplemented)
	m.mu.Lock()
	defer m.mu.Unlock()
	if cur := m.ready[name]; cur != nil {
		cur.update(path, src, route, sq.pool.Name, epoch)
		return cur, nil
	}
	rq = newReadyQueue(m, name, site, path, src, route, sq.pool.Name, epoch)
	m.ready[name] = rq
	return rq, nil
}
