package queue

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/duration"
	"github.com/kumogo/kumogo/internal/throttle"
)

// Health suspensions of egress sources (make_egress_source's
// suspend_when_unplumbed and suspend_when_proxy_unhealthy pages). A
// connection that fails because of the source itself (its address is not
// plumbed here, or its proxy is unreachable or refuses to bind the source
// address: the connector's error says which with a SourceFailureKind
// method) counts against the source. When the source's rule for that kind
// fires (at once, or after N failures within a period), the source is
// suspended for the rule's duration: pool selection skips it, so other
// sources of the pool carry its mail, and the messages waiting in its
// ready queues go back to be routed again (to another source, or held
// until the earliest suspension of the pool ends). When the duration is
// over the source is used again; a connection that still fails suspends it
// anew. Suspension is process-local, as in KumoMTA.

// sourceFailure is a connection error that speaks against the egress
// source; queue/egress's proxy and bind errors implement it.
type sourceFailure interface {
	SourceFailureKind() string
}

// Source failure kinds (queue/egress's FailureUnplumbed and
// FailureProxyUnhealthy): the label values of the health metrics.
const (
	kindUnplumbed      = "Unplumbed"
	kindProxyUnhealthy = "ProxyUnhealthy"
)

// sourceFailureKind is the kind of a connection error that speaks against
// the source, "" for any other error.
func sourceFailureKind(err error) string {
	var sf sourceFailure
	if errors.As(err, &sf) {
		return sf.SourceFailureKind()
	}
	return ""
}

// suspensionPolicy is a decoded suspend_when_* table.
type suspensionPolicy struct {
	threshold int           // failures that fire the rule; 1 for Immediate
	period    time.Duration // the window of a Threshold trigger
	duration  time.Duration
}

// parseSuspensionPolicy reads the table internal/config validated and
// normalized ({trigger='Immediate' | {Threshold='N/period'}, duration}).
func parseSuspensionPolicy(raw map[string]any) (suspensionPolicy, bool) {
	if raw == nil {
		return suspensionPolicy{}, false
	}
	ds, _ := raw["duration"].(string)
	d, err := duration.Parse(ds)
	if err != nil || d <= 0 {
		return suspensionPolicy{}, false
	}
	p := suspensionPolicy{threshold: 1, duration: d}
	if t, ok := raw["trigger"].(map[string]any); ok {
		spec, _ := t["Threshold"].(string)
		sp, err := throttle.Parse(spec)
		if err != nil || sp.Limit == 0 {
			return suspensionPolicy{}, false
		}
		p.threshold, p.period = int(sp.Limit), sp.Period
	}
	return p, true
}

// policyFor is src's rule for failures of kind (ok false: none).
func policyFor(src *config.EgressSource, kind string) (suspensionPolicy, bool) {
	switch kind {
	case kindUnplumbed:
		return parseSuspensionPolicy(src.SuspendWhenUnplumbed)
	case kindProxyUnhealthy:
		return parseSuspensionPolicy(src.SuspendWhenProxyUnhealthy)
	}
	return suspensionPolicy{}, false
}

// sourceHealth is the health state of the egress sources, by name.
type sourceHealth struct {
	active atomic.Int32 // sources suspended now: the fast path's check

	mu      sync.Mutex
	sources map[string]*sourceState
}

// sourceState is one source's recent failures and suspension.
type sourceState struct {
	failures map[string][]time.Time // by kind, within the rule's period
	until    time.Time              // suspended until then
	reason   string
	timer    *time.Timer // ends the suspension
}

// suspendedUntil reports whether the source named src is suspended at
// now, and until when.
func (h *sourceHealth) suspendedUntil(src string, now time.Time) (time.Time, bool) {
	if h.active.Load() == 0 {
		return time.Time{}, false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if st := h.sources[src]; st != nil && now.Before(st.until) {
		return st.until, true
	}
	return time.Time{}, false
}

// sourceConnectFailed counts a connection failure of src that err shows
// to be the source's own (nothing happens for any other error), and
// suspends src when its rule for that kind fires.
func (m *Manager) sourceConnectFailed(src *config.EgressSource, err error) {
	kind := sourceFailureKind(err)
	if kind == "" {
		return
	}
	if f := m.o.SourceConnectionFailed; f != nil {
		f(src.Name, kind)
	}
	pol, ok := policyFor(src, kind)
	if !ok {
		return
	}
	h := &m.health
	now := time.Now()
	h.mu.Lock()
	if h.sources == nil {
		h.sources = make(map[string]*sourceState)
	}
	st := h.sources[src.Name]
	if st == nil {
		st = &sourceState{failures: make(map[string][]time.Time)}
		h.sources[src.Name] = st
	}
	if pol.threshold > 1 {
		recent := st.failures[kind][:0]
		for _, t := range st.failures[kind] {
			if now.Sub(t) < pol.period {
				recent = append(recent, t)
			}
		}
		recent = append(recent, now)
		if len(recent) < pol.threshold {
			st.failures[kind] = recent
			h.mu.Unlock()
			return
		}
		st.failures[kind] = nil
	}
	until := now.Add(pol.duration)
	started := st.timer == nil
	if until.After(st.until) {
		st.until, st.reason = until, kind
	}
	if started {
		h.active.Add(1)
		name := src.Name
		st.timer = time.AfterFunc(pol.duration, func() { m.sourceHealthTimer(name) })
	}
	h.mu.Unlock()
	if !started {
		return // re-triggered while suspended: the suspension is longer now
	}
	m.log.Warn().Str("source", src.Name).Str("reason", kind).Err(err).Time("until", until).
		Msg("egress source suspended: its connections fail because of the source itself")
	if f := m.o.SourceSuspended; f != nil {
		f(src.Name, kind, true)
	}
	m.rerouteSource(src.Name)
}

// sourceHealthTimer ends the suspension of the named source when it is
// over (or waits for its extended end).
func (m *Manager) sourceHealthTimer(name string) {
	h := &m.health
	h.mu.Lock()
	st := h.sources[name]
	if st == nil || st.until.IsZero() {
		h.mu.Unlock()
		return
	}
	if left := time.Until(st.until); left > 0 {
		st.timer.Reset(left)
		h.mu.Unlock()
		return
	}
	reason := st.reason
	st.until, st.reason, st.timer = time.Time{}, "", nil
	if len(st.failures) == 0 {
		delete(h.sources, name)
	}
	h.active.Add(-1)
	h.mu.Unlock()
	m.log.Info().Str("source", name).Str("reason", reason).Msg("egress source suspension over; the source is used again")
	if f := m.o.SourceSuspended; f != nil {
		f(name, reason, false)
	}
}

// rerouteSource sends the messages waiting in the ready queues of the
// named source back to be routed again: pool selection now skips the
// source. No attempt is counted.
func (m *Manager) rerouteSource(name string) {
	m.mu.Lock()
	var rqs []*readyQueue
	for _, rq := range m.ready {
		rq.mu.Lock()
		if rq.src.Name == name {
			rqs = append(rqs, rq)
		}
		rq.mu.Unlock()
	}
	m.mu.Unlock()
	for _, rq := range rqs {
		for _, e := range rq.take(func(string) bool { return true }) {
			m.reroute(e)
		}
	}
}

// reroute puts e back in its scheduled queue, due now.
func (m *Manager) reroute(e *entry) {
	m.undefer(m.ctx, e.msg)
	m.mu.Lock()
	closed := m.closed
	m.mu.Unlock()
	if closed {
		return
	}
	m.schedule(e, time.Now())
}

// sourceSuspended reroutes e when the source of rq is suspended; the
// dispatcher calls it for each message it takes.
func (m *Manager) sourceSuspended(rq *readyQueue, e *entry) bool {
	if m.health.active.Load() == 0 {
		return false
	}
	rq.mu.Lock()
	src := rq.src.Name
	rq.mu.Unlock()
	if _, ok := m.health.suspendedUntil(src, time.Now()); !ok {
		return false
	}
	m.reroute(e)
	return true
}
