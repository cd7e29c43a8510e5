package queue

import (
	"container/heap"
	"context"
	"errors"
	"maps"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/kumogo/kumogo/internal/adminapi"
	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/logrecord"
	"github.com/kumogo/kumogo/internal/message"
	"github.com/kumogo/kumogo/internal/smtpreply"
)

// Administrative actions (KumoMTA's "bounce", "suspend",
// "suspend-ready-q" and "rebind" admin endpoints):
//
//   - a bounce removes the matching messages waiting now with an
//     AdminBounce record (551 5.7.1 "Administrator bounced with reason:
//     ...", site localhost), and while it lasts bounces every matching
//     message that becomes due, newly received ones included;
//   - a scheduled queue suspension stops matching messages before they
//     reach a ready queue: each logs a TransientFailure (451 4.4.4
//     "KumoMTA internal: scheduled queue is suspended: ...", site = the
//     scheduled queue) and waits for its next retry, at the latest until
//     the suspension ends;
//   - a ready queue suspension sends the ready queue's messages back to
//     their scheduled queues, where they wait (no attempt counted) until it
//     ends; other sources of the pool are used meanwhile;
//   - cancelling a suspension makes the messages it held due at once.
//
// Messages being delivered when a rule is made finish that attempt.

var _ adminapi.Service = (*Manager)(nil)

// rules returns the administrative rules.
func (m *Manager) rules() *adminRules { return &m.admin }

// adminRecord logs an administrative record for all recipients of e.
func (m *Manager) adminRecord(t logrecord.Type, e *entry, site string, resp smtpreply.Response) {
	if m.o.Logger == nil || !m.o.Logger.Enabled() {
		return
	}
	rcpts := e.msg.Recipients()
	list := make([]string, len(rcpts))
	for i, r := range rcpts {
		list[i] = r.String()
	}
	rp, _ := e.msg.MetaString("reception_protocol")
	rec := &logrecord.Record{
		Type:              t,
		ID:                e.msg.ID(),
		Sender:            e.msg.Sender().String(),
		Recipient:         list,
		Queue:             e.queue,
		Site:              site,
		Size:              int64(e.msg.Size()),
		Response:          resp,
		Timestamp:         time.Now(),
		Created:           e.msg.Created(),
		NumAttempts:       e.msg.Attempts(),
		ReceptionProtocol: rp,
		NodeID:            m.o.NodeID,
	}
	m.o.Logger.Log(rec, e.msg)
}

// adminIntercept applies the bounces and scheduled queue suspensions to a
// message on its way to (or out of) a ready queue; true means it was
// taken care of. site is where a suspension's record says it stopped.
func (m *Manager) adminIntercept(e *entry, site string) bool {
	a := m.rules()
	if a.n.Load() == 0 || e.queue == message.DeferredInjectQueue {
		return false
	}
	gen := a.cancels.Load()
	now := time.Now()
	if r := a.bounceFor(e.queue, now); r != nil {
		m.adminBounce(e, r)
		return true
	}
	if r := a.suspensionFor(e.queue, now); r != nil {
		if site == "" {
			site = e.queue
		}
		m.holdSuspended(e, site, r, gen)
		return true
	}
	return false
}

// adminBounce removes e with an AdminBounce record.
func (m *Manager) adminBounce(e *entry, r *bounceRule) {
	if err := m.materialize(m.ctx, e); err != nil {
		if !errors.Is(err, errGone) && m.ctx.Err() == nil {
			// the rule bounces it when it is due
			m.log.Error().Err(err).Str("id", e.ID()).Msg("reading a message to bounce from the spool; trying again in a minute")
			m.schedule(e, time.Now().Add(time.Minute))
		}
		return
	}
	if !r.SuppressLogging {
		m.adminRecord(logrecord.AdminBounce, e, "localhost", smtpreply.Response{Code: 551,
			Enhanced: &smtpreply.EnhancedCode{Class: 5, Subject: 7, Detail: 1},
			Content:  "Administrator bounced with reason: " + r.Reason})
	}
	m.rules().countBounce(r, e.queue)
	if m.dropDeferred(e.msg.ID()) {
		return
	}
	m.removeFinished(e.msg.ID())
}

// holdSuspended delays a message of a suspended scheduled queue as
// KumoMTA does: a TransientFailure record and a retry with the queue's
// backoff (attempts + 1), but no later than the end of the suspension.
func (m *Manager) holdSuspended(e *entry, site string, r *suspendRule, gen uint64) {
	if !m.need(e) {
		return
	}
	resp := smtpreply.Response{Code: 451, Enhanced: &smtpreply.EnhancedCode{Class: 4, Subject: 4, Detail: 4},
		Content: "KumoMTA internal: scheduled queue is suspended: " + r.Reason}
	m.adminRecord(logrecord.TransientFailure, e, site, resp)
	cfg := config.DefaultQueueConfig()
	if sq := m.schedFor(e.queue); sq != nil {
		cfg = sq.cfg
	}
	m.mu.Lock()
	delay := NextDelay(&cfg, e.msg.Attempts(), m.rnd)
	closed := m.closed
	m.mu.Unlock()
	e.msg.IncrementAttempts()
	now := time.Now()
	due := now.Add(delay)
	if r.Expires.Before(due) {
		due = r.Expires
	}
	if age := due.Sub(e.msg.Created()); age > cfg.MaxAge {
		m.expire(e, nil, smtpreply.Response{Code: 551, Enhanced: &smtpreply.EnhancedCode{Class: 5, Subject: 4, Detail: 7},
			Content: ExpiryText(age, cfg.MaxAge)})
		return
	}
	m.undefer(context.Background(), e.msg)
	if closed {
		return
	}
	m.hold(e, due, gen)
}

// hold schedules a message held by a suspension. A suspension cancelled
// since gen was read (the hold decision raced with the cancel, whose wake
// ran before the message was back in the heap) releases it at once.
func (m *Manager) hold(e *entry, due time.Time, gen uint64) {
	e.held = true
	m.schedule(e, due)
	if m.rules().cancels.Load() != gen {
		m.wakeHeld(func(x *entry) bool { return x == e })
	}
}

// holdForReadyQueue puts a message back into its scheduled queue until a
// ready queue suspension ends; no attempt is counted.
func (m *Manager) holdForReadyQueue(e *entry, until time.Time, gen uint64) {
	m.undefer(context.Background(), e.msg)
	m.mu.Lock()
	closed := m.closed
	m.mu.Unlock()
	if closed {
		return
	}
	m.hold(e, until, gen)
}

// readyName is the name of the ready queue for (source, route).
func readyName(source string, route Route) string {
	return source + "->" + route.Site() + "@smtp_client"
}

// pickSourceFor chooses the next source of the queue's pool whose ready
// queue is not suspended, by an administrator or by the source's health
// (sourcehealth.go). When all are, it returns "" and the earliest end of
// their suspensions, with the cancel generation read before the lookups
// (for holdForReadyQueue).
func (m *Manager) pickSourceFor(sq *schedQueue, route Route) (string, time.Time, uint64) {
	a := m.rules()
	gen := a.cancels.Load()
	src := m.pickSource(sq)
	if a.n.Load() == 0 && m.health.active.Load() == 0 {
		return src, time.Time{}, 0
	}
	now := time.Now()
	until, held := m.sourceHeld(src, route, now)
	if !held {
		return src, time.Time{}, 0
	}
	// one turn of the weighted round robin visits every source
	turn := 0
	m.mu.Lock()
	for _, en := range sq.pool.Entries {
		turn += max(en.Weight, 0)
	}
	m.mu.Unlock()
	for range turn {
		alt := m.pickSource(sq)
		au, held := m.sourceHeld(alt, route, now)
		if !held {
			return alt, time.Time{}, 0
		}
		if au.Before(until) {
			until = au
		}
	}
	return "", until, gen
}

// sourceHeld reports whether the ready queue of src for route is
// suspended at now, by an administrator or by the source's health, and
// until when (the later end when both).
func (m *Manager) sourceHeld(src string, route Route, now time.Time) (time.Time, bool) {
	var until time.Time
	held := false
	if r := m.rules().readySuspensionFor(readyName(src, route), now); r != nil {
		until, held = r.Expires, true
	}
	if u, ok := m.health.suspendedUntil(src, now); ok {
		if u.After(until) {
			until = u
		}
		held = true
	}
	return until, held
}

// readySuspended holds e when rq is suspended; the dispatcher calls it
// for each message it takes.
func (m *Manager) readySuspended(rq *readyQueue, e *entry) bool {
	a := m.rules()
	if a.n.Load() == 0 {
		return false
	}
	gen := a.cancels.Load()
	if r := a.readySuspensionFor(rq.name, time.Now()); r != nil {
		m.holdForReadyQueue(e, r.Expires, gen)
		return true
	}
	return false
}

// takeWaiting removes from the scheduled queues (the timer heap and the
// messages parked during a destination lookup) and, with ready, from the
// ready queues the messages whose scheduled queue keep
// accepts, and returns them. Messages being delivered are not touched.
func (m *Manager) takeWaiting(keep func(queue string) bool, ready bool) []*entry {
	var out []*entry
	m.mu.Lock()
	kept := m.timers[:0]
	for _, e := range m.timers {
		if keep(e.queue) {
			out = append(out, e)
			e.index = -1
			m.unwaitLocked(e)
			continue
		}
		e.index = len(kept)
		kept = append(kept, e)
	}
	clear(m.timers[len(kept):])
	m.timers = kept
	heap.Init(&m.timers)
	// messages due while their destination is looked up
	for _, sq := range m.sched {
		if len(sq.parked) == 0 || !keep(sq.name) {
			continue
		}
		out = append(out, sq.parked...)
		sq.parked = nil
	}
	var rqs []*readyQueue
	if ready {
		for _, rq := range m.ready {
			rqs = append(rqs, rq)
		}
	}
	m.mu.Unlock()
	for _, rq := range rqs {
		out = append(out, rq.take(keep)...)
	}
	return out
}

// take removes the waiting messages whose scheduled queue keep accepts.
func (rq *readyQueue) take(keep func(queue string) bool) []*entry {
	rq.mu.Lock()
	defer rq.mu.Unlock()
	var out []*entry
	rest := rq.items[:rq.head]
	for _, e := range rq.items[rq.head:] {
		if e != nil && keep(e.queue) {
			out = append(out, e)
			continue
		}
		rest = append(rest, e)
	}
	clear(rq.items[len(rest):])
	rq.items = rest
	return out
}

// wakeHeld makes the messages held by suspensions due now when pick
// accepts them (their suspension has gone).
func (m *Manager) wakeHeld(pick func(e *entry) bool) {
	now := time.Now()
	m.mu.Lock()
	n := 0
	for _, e := range m.timers {
		if e.held && pick(e) {
			e.held = false
			e.due = now
			n++
		}
	}
	if n > 0 {
		heap.Init(&m.timers)
	}
	m.mu.Unlock()
	if n > 0 {
		select {
		case m.wake <- struct{}{}:
		default:
		}
	}
}

// Bounce serves POST /api/admin/bounce/v1: the rule is stored, then the
// matching messages waiting now are bounced; the response counts them.
func (m *Manager) Bounce(ctx context.Context, req adminapi.BounceV1Request) (adminapi.BounceV1Response, error) {
	if err := adminapi.ValidateReason(req.Reason); err != nil {
		return adminapi.BounceV1Response{}, err
	}
	expires, err := adminapi.Expiry(time.Now(), req.Duration, req.Expires)
	if err != nil {
		return adminapi.BounceV1Response{}, err
	}
	r := &bounceRule{ID: uuid.NewString(), Sel: req.Selection, Reason: req.Reason,
		SuppressLogging: req.SuppressLogging, Expires: expires}
	a := m.rules()
	a.mu.Lock()
	a.pruneLocked(time.Now())
	a.file.Bounces = append(a.file.Bounces, r)
	a.countLocked()
	a.mu.Unlock()
	if err := a.save(); err != nil {
		m.log.Error().Err(err).Msg("the bounce rule is in effect but could not be saved")
	}
	m.log.Info().Str("id", r.ID).Str("reason", r.Reason).Time("expires", expires).Msg("admin bounce added")
	sel := r.Sel
	victims := m.takeWaiting(func(q string) bool {
		parts := message.ParseQueueName(q)
		return q != message.DeferredInjectQueue && matches(&sel, q, &parts)
	}, true)
	resp := adminapi.BounceV1Response{ID: r.ID, Bounced: map[string]int{}}
	for _, e := range victims {
		m.adminBounce(e, r)
		resp.Bounced[e.queue]++
		resp.TotalBounced++
	}
	return resp, nil
}

// ListBounces serves GET /api/admin/bounce/v1.
func (m *Manager) ListBounces() []adminapi.BounceV1ListEntry {
	a := m.rules()
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	out := []adminapi.BounceV1ListEntry{}
	for _, r := range a.file.Bounces {
		if !r.Expires.After(now) {
			continue
		}
		e := adminapi.BounceV1ListEntry{ID: r.ID, Campaign: r.Sel.Campaign, Tenant: r.Sel.Tenant, Domain: r.Sel.Domain,
			RoutingDomain: r.Sel.RoutingDomain, Reason: r.Reason, Duration: adminapi.FormatDuration(r.Expires.Sub(now)),
			Bounced: maps.Clone(r.Bounced)}
		if e.Bounced == nil {
			e.Bounced = map[string]int{}
		}
		for _, n := range e.Bounced {
			e.TotalBounced += n
		}
		out = append(out, e)
	}
	return out
}

// cancel removes the rule with id from list and saves the rules.
func cancelRule[T any](m *Manager, list *[]*T, id string, idOf func(*T) string) (*T, bool, error) {
	a := m.rules()
	a.mu.Lock()
	var found *T
	*list = slices.DeleteFunc(*list, func(r *T) bool {
		if idOf(r) == id {
			found = r
			return true
		}
		return false
	})
	a.pruneLocked(time.Now())
	a.mu.Unlock()
	if found == nil {
		return nil, false, nil
	}
	a.cancels.Add(1)
	return found, true, a.save()
}

// CancelBounce serves DELETE /api/admin/bounce/v1.
func (m *Manager) CancelBounce(id string) (bool, error) {
	_, ok, err := cancelRule(m, &m.admin.file.Bounces, id, func(r *bounceRule) string { return r.ID })
	if ok {
		m.log.Info().Str("id", id).Msg("admin bounce cancelled")
	}
	return ok, err
}

// Suspend serves POST /api/admin/suspend/v1.
func (m *Manager) Suspend(ctx context.Context, req adminapi.SuspendV1Request) (adminapi.SuspendV1Response, error) {
	if err := adminapi.ValidateReason(req.Reason); err != nil {
		return adminapi.SuspendV1Response{}, err
	}
	expires, err := adminapi.Expiry(time.Now(), req.Duration, req.Expires)
	if err != nil {
		return adminapi.SuspendV1Response{}, err
	}
	r := &suspendRule{ID: uuid.NewString(), Sel: req.Selection(), Reason: req.Reason, Expires: expires}
	a := m.rules()
	a.mu.Lock()
	a.pruneLocked(time.Now())
	a.file.Suspensions = append(a.file.Suspensions, r)
	a.countLocked()
	a.mu.Unlock()
	m.log.Info().Str("id", r.ID).Str("reason", r.Reason).Time("expires", expires).Msg("scheduled queue suspension added")
	return adminapi.SuspendV1Response{ID: r.ID}, a.save()
}

// ListSuspensions serves GET /api/admin/suspend/v1.
func (m *Manager) ListSuspensions() []adminapi.SuspendV1ListEntry {
	a := m.rules()
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	out := []adminapi.SuspendV1ListEntry{}
	for _, r := range a.file.Suspensions {
		if r.Expires.After(now) {
			out = append(out, adminapi.SuspendV1ListEntry{ID: r.ID, Campaign: r.Sel.Campaign, Tenant: r.Sel.Tenant,
				Domain: r.Sel.Domain, Reason: r.Reason, Duration: adminapi.FormatDuration(r.Expires.Sub(now))})
		}
	}
	return out
}

// CancelSuspension serves DELETE /api/admin/suspend/v1: the messages the
// suspension held are due at once.
func (m *Manager) CancelSuspension(id string) (bool, error) {
	_, ok, err := cancelRule(m, &m.admin.file.Suspensions, id, func(r *suspendRule) string { return r.ID })
	if !ok {
		return false, err
	}
	m.log.Info().Str("id", id).Msg("scheduled queue suspension cancelled")
	now := time.Now()
	m.wakeHeld(func(e *entry) bool { return m.admin.suspensionFor(e.queue, now) == nil })
	return true, err
}

// SuspendReadyQueue serves POST /api/admin/suspend-ready-q/v1: the ready
// queue's waiting messages go back to their scheduled queues.
func (m *Manager) SuspendReadyQueue(ctx context.Context, req adminapi.SuspendReadyQueueV1Request) (adminapi.SuspendV1Response, error) {
	if err := adminapi.ValidateReason(req.Reason); err != nil {
		return adminapi.SuspendV1Response{}, err
	}
	if req.Name == "" {
		return adminapi.SuspendV1Response{}, adminapi.Invalid("missing field `name`")
	}
	expires, err := adminapi.Expiry(time.Now(), req.Duration, req.Expires)
	if err != nil {
		return adminapi.SuspendV1Response{}, err
	}
	r := &readySuspendRule{ID: uuid.NewString(), Name: req.Name, Reason: req.Reason, Expires: expires}
	a := m.rules()
	a.mu.Lock()
	a.pruneLocked(time.Now())
	a.file.ReadySuspensions = append(a.file.ReadySuspensions, r)
	a.countLocked()
	a.mu.Unlock()
	m.log.Info().Str("id", r.ID).Str("name", r.Name).Str("reason", r.Reason).Time("expires", expires).Msg("ready queue suspension added")
	serr := a.save()
	m.mu.Lock()
	rq := m.ready[req.Name]
	m.mu.Unlock()
	if rq != nil {
		gen := a.cancels.Load()
		for _, e := range rq.take(func(string) bool { return true }) {
			m.holdForReadyQueue(e, expires, gen)
		}
	}
	return adminapi.SuspendV1Response{ID: r.ID}, serr
}

// ListReadyQueueSuspensions serves GET /api/admin/suspend-ready-q/v1.
func (m *Manager) ListReadyQueueSuspensions() []adminapi.SuspendReadyQueueV1ListEntry {
	a := m.rules()
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	out := []adminapi.SuspendReadyQueueV1ListEntry{}
	for _, r := range a.file.ReadySuspensions {
		if r.Expires.After(now) {
			out = append(out, adminapi.SuspendReadyQueueV1ListEntry{ID: r.ID, Name: r.Name, Reason: r.Reason,
				Duration: adminapi.FormatDuration(r.Expires.Sub(now)), Expires: r.Expires.UTC()})
		}
	}
	return out
}

// CancelReadyQueueSuspension serves DELETE /api/admin/suspend-ready-q/v1:
// the messages held are due at once (those still held by another
// suspension are held again when promoted).
func (m *Manager) CancelReadyQueueSuspension(id string) (bool, error) {
	_, ok, err := cancelRule(m, &m.admin.file.ReadySuspensions, id, func(r *readySuspendRule) string { return r.ID })
	if !ok {
		return false, err
	}
	m.log.Info().Str("id", id).Msg("ready queue suspension cancelled")
	now := time.Now()
	m.wakeHeld(func(e *entry) bool { return m.admin.suspensionFor(e.queue, now) == nil })
	return true, err
}
