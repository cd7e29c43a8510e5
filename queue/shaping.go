package queue

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/sharedlimit"
	"github.com/kumogo/kumogo/internal/smtpreply"
	"github.com/kumogo/kumogo/internal/throttle"
)

// Traffic shaping of the egress path (KumoMTA's make_egress_path pages):
// message rates, the connection rate and connection limits. Every limit
// lives in the Manager's sharedlimit.Store under a name, so that limits
// named alike in several egress paths are one limit (the additional_*
// options), and so that with kumo.configure_redis_throttles every node
// shares them.

// namedRate is one throttle of an egress path.
type namedRate struct {
	name string
	spec throttle.Spec
}

// egressLimits are the limits of one ready queue, sorted smallest first.
type egressLimits struct {
	msgRates  []namedRate
	connRate  *namedRate
	conns     []sharedlimit.Limit
	selection []namedRate
}

// rates parses the throttles of specs (name → spec), sorted by their
// steady rate, smallest first (KumoMTA's additional_message_rate_throttles
// page: that order avoids spending a slot of a large allocation only to
// trip over a small one).
func rates(main string, mainSpec string, extra map[string]string) []namedRate {
	var out []namedRate
	add := func(name, s string) {
		if s == "" {
			return
		}
		sp, err := throttle.Parse(s)
		if err != nil {
			return // the runtime validated it
		}
		out = append(out, namedRate{name: name, spec: sp})
	}
	add(main, mainSpec)
	for name, s := range extra {
		add(name, s)
	}
	slices.SortStableFunc(out, func(a, b namedRate) int {
		switch ra, rb := a.spec.PerSecond(), b.spec.PerSecond(); {
		case ra < rb:
			return -1
		case ra > rb:
			return 1
		}
		return 0
	})
	return out
}

// newEgressLimits derives the limits of the ready queue named rq from its
// egress path. The limit names of the built-in options carry the ready
// queue's name, as KumoMTA's "kumomta.connection_limit.<queue>" does.
func newEgressLimits(rq string, p config.EgressPath) egressLimits {
	var l egressLimits
	l.msgRates = rates("kumomta.max_message_rate."+rq, p.MaxMessageRate, p.AdditionalMessageRateThrottles)
	if cr := rates("kumomta.max_connection_rate."+rq, p.MaxConnectionRate, nil); len(cr) == 1 {
		l.connRate = &cr[0]
	}
	l.selection = rates("kumomta.source_selection_rate."+rq, p.SourceSelectionRate, p.AdditionalSourceSelectionRates)
	ttl := LeaseDuration(p)
	l.conns = append(l.conns, sharedlimit.Limit{Name: "kumomta.connection_limit." + rq, Limit: p.ConnectionLimit, Local: p.ConnectionLimitLocal, TTL: ttl})
	for name, n := range p.AdditionalConnectionLimits {
		l.conns = append(l.conns, sharedlimit.Limit{Name: name, Limit: n, Local: p.AdditionalConnectionLimitsLocal[name], TTL: ttl})
	}
	slices.SortStableFunc(l.conns, func(a, b sharedlimit.Limit) int { return a.Limit - b.Limit })
	return l
}

// LeaseDuration is how long a shared connection-limit lease of path p
// lasts without renewal: as in KumoMTA's ready queue, the theoretical
// lifetime of a connection sending one message, the sum of the connect,
// banner, EHLO, AUTH, MAIL FROM, RCPT TO, DATA, data-dot, STARTTLS and
// idle timeouts. A node that dies frees its slots after this long, so
// shorter timeouts free them sooner (KumoMTA's defaults add up to about
// 28 minutes). Holders renew their leases while the connection lives.
func LeaseDuration(p config.EgressPath) time.Duration {
	return p.ConnectTimeout + p.BannerTimeout + p.EhloTimeout + p.AuthTimeout + p.MailFromTimeout +
		p.RcptToTimeout + p.DataTimeout + p.DataDotTimeout + p.StartTLSTimeout + p.IdleTimeout
}

// takeMessageRates counts one message against every message rate of the
// path. When a rate is exhausted for less than maxWait it sleeps and tries
// again; for longer it returns that delay so that the message can wait in
// its scheduled queue instead of holding a connection (KumoMTA's
// max_message_rate page: a delay longer than idle_timeout delays the
// messages). ok is false when ctx ended.
func (m *Manager) takeMessageRates(ctx context.Context, rates []namedRate, maxWait time.Duration) (delay time.Duration, ok bool) {
	for i := 0; i < len(rates); {
		res := m.limits.Throttle(ctx, rates[i].name, rates[i].spec)
		if !res.Throttled {
			i++
			continue
		}
		if res.RetryAfter > maxWait {
			return res.RetryAfter, true
		}
		if !sleepCtx(ctx, max(res.RetryAfter, time.Millisecond)) {
			return 0, false
		}
	}
	return 0, true
}

// acquireConnLeases takes a slot of every connection limit of the path,
// waiting while one of them is full (the dispatchers of this process ask
// for a full shared limit one at a time: sharedlimit's AcquireAllWait).
// false when ctx ended.
func (m *Manager) acquireConnLeases(ctx context.Context, limits []sharedlimit.Limit) ([]*sharedlimit.Lease, bool) {
	return m.limits.AcquireAllWait(ctx, limits)
}

// selectionAllowed checks the source selection rates of rq's path: the
// first exhausted one makes the source ineligible for this selection
// (KumoMTA's source_selection_rate page).
func (m *Manager) selectionAllowed(ctx context.Context, rq *readyQueue) bool {
	rq.mu.Lock()
	sel := rq.limits.selection
	rq.mu.Unlock()
	for _, r := range sel {
		if m.limits.Throttle(ctx, r.name, r.spec).Throttled {
			return false
		}
	}
	return true
}

// selectReadyQueue picks the source for a message of sq by weighted round
// robin, skipping suspended ready queues (admin.go) and sources whose
// source_selection_rate is exhausted. With no ready queue, a non-zero
// until means every one is suspended until then; otherwise no source is
// eligible by its selection rates now. gen is the suspension
// generation that holdForReadyQueue takes (admin.go).
func (m *Manager) selectReadyQueue(ctx context.Context, sq *schedQueue, route Route) (*readyQueue, time.Time, uint64, error) {
	tried := map[string]bool{}
	m.mu.Lock()
	tries := 0
	for _, en := range sq.pool.Entries {
		tries += max(en.Weight, 0)
	}
	m.mu.Unlock()
	tries = max(min(tries, 256), 1)
	for range tries {
		src, until, gen := m.pickSourceFor(sq, route)
		if src == "" {
			if len(tried) == 0 {
				return nil, until, gen, nil
			}
			break
		}
		if tried[src] {
			continue
		}
		tried[src] = true
		rq, err := m.readyQueue(ctx, sq, route, src)
		if err != nil {
			return nil, time.Time{}, 0, err
		}
		if m.selectionAllowed(ctx, rq) {
			return rq, time.Time{}, 0, nil
		}
	}
	return nil, time.Time{}, 0, nil
}

// noEligibleSource records KumoMTA's TransientFailure for a message whose
// pool has no source eligible for selection, and retries it later.
func (m *Manager) noEligibleSource(e *entry, sq *schedQueue) {
	pool := sq.pool.Name
	if pool == "" {
		pool = "unspecified"
	}
	m.transient(e, sq, nil, smtpreply.Response{Code: 451, Enhanced: &smtpreply.EnhancedCode{Class: 4, Subject: 4, Detail: 4},
		Content: fmt.Sprintf("KumoMTA internal: no sources for %s pool=`%s` are eligible for selection at this time", sq.name, pool)}, "")
}

// queueRate parses a scheduled queue's max_message_rate (nil when unset).
func queueRate(spec string) *throttle.Spec {
	if spec == "" {
		return nil
	}
	sp, err := throttle.Parse(spec)
	if err != nil {
		return nil // the runtime validated it
	}
	return &sp
}

// queueRateKey names a scheduled queue's max_message_rate throttle.
func queueRateKey(queue string) string { return "schedq-" + queue + "-message-rate" }

// sleepCtx sleeps d; false when ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
