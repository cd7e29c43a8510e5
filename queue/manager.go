package queue

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/logrecord"
	"github.com/kumogo/kumogo/internal/message"
	"github.com/kumogo/kumogo/internal/smtpreply"
	"github.com/kumogo/kumogo/internal/throttle"
)

// Options configure a Manager.
type Options struct {
	Policy    Policy
	Spool     Spool
	Logger    Logger // may be nil
	Router    Router
	Connector Connector
	Log       zerolog.Logger
	NodeID    string
	// NoSync turns off the fsync of spooled messages before they are
	// acknowledged (KumoMTA's flush=false default). kumogo syncs by default.
	NoSync bool
	// ConfigTTL is how long a scheduled queue's config is reused before
	// get_queue_config is asked again (default 1 minute).
	ConfigTTL time.Duration
}

// Manager owns the scheduled and ready queues.
type Manager struct {
	o   Options
	log zerolog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	sched  map[string]*schedQueue
	ready  map[string]*readyQueue
	timers entryHeap
	wake   chan struct{}
	rnd    *rand.Rand
	closed bool

	// deferred holds messages accepted with deferred_spool: in memory only
	// until their first delay or a graceful shutdown.
	defMu    sync.Mutex
	deferred map[string]*message.Message

	noted sync.Map // option names already reported as not implemented
}

// noteUnimplemented logs, once per option, that a policy asked for
// something the engine does not do yet.
func (m *Manager) noteUnimplemented(kind string, opts []string) {
	for _, o := range opts {
		if _, seen := m.noted.LoadOrStore(kind+"."+o, true); !seen {
			m.log.Warn().Msgf("%s option %q is accepted but not implemented yet", kind, o)
		}
	}
}

// entry is one queued message.
type entry struct {
	msg   *message.Message
	queue string
	due   time.Time
	// shrunk is set while the body lives only in the spool
	shrunk bool
	index  int // heap index, -1 when not in the heap
}

// schedQueue is a scheduled queue: its config and destination, resolved
// once and refreshed by TTL.
type schedQueue struct {
	name     string
	parts    message.QueueNameParts
	cfg      config.QueueConfig
	loaded   time.Time
	route    Route
	routeErr error
	pool     config.EgressPool
	rr       int               // weighted round robin position
	rate     *throttle.Limiter // max_message_rate for scheduled → ready
}

// New builds a Manager. Call Start to run its scheduler.
func New(o Options) (*Manager, error) {
	if o.Policy == nil || o.Spool == nil || o.Router == nil || o.Connector == nil {
		return nil, errors.New("queue: Policy, Spool, Router and Connector are required")
	}
	if o.ConfigTTL == 0 {
		o.ConfigTTL = time.Minute
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Manager{
		o: o, log: o.Log, ctx: ctx, cancel: cancel,
		sched:    map[string]*schedQueue{},
		ready:    map[string]*readyQueue{},
		wake:     make(chan struct{}, 1),
		deferred: map[string]*message.Message{},
		rnd:      rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7)),
	}, nil
}

// Start runs the scheduler loop.
func (m *Manager) Start() {
	m.wg.Add(1)
	go m.timerLoop()
}

// Shutdown stops the scheduler and the dispatchers. Messages stay in the
// spool for the next start. In-flight deliveries are given until ctx ends.
func (m *Manager) Shutdown(ctx context.Context) error {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	m.cancel()
	done := make(chan struct{})
	go func() { m.wg.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	// deferred_spool messages still in memory are written now
	m.defMu.Lock()
	pending := make([]*message.Message, 0, len(m.deferred))
	for _, msg := range m.deferred {
		pending = append(pending, msg)
	}
	m.deferred = map[string]*message.Message{}
	m.defMu.Unlock()
	for _, msg := range pending {
		if serr := m.o.Spool.Save(context.Background(), msg, !m.o.NoSync); serr != nil {
			m.log.Error().Err(serr).Str("id", msg.ID()).Msg("writing a deferred-spool message at shutdown")
			err = errors.Join(err, serr)
		}
	}
	return err
}

// ---- reception side (smtpd.Enqueuer) ----

// Spool resolves the message's scheduled queue (running get_queue_config)
// and stores the message durably. With deferred (the listener's
// deferred_spool) the message is only kept in memory: it is written the
// first time it has to wait for a retry, or at a graceful shutdown, and a
// message delivered at once never touches the disk.
func (m *Manager) Spool(ctx context.Context, msg *message.Message, deferred bool) error {
	if _, err := m.schedQueue(ctx, msg.QueueName()); err != nil {
		return fmt.Errorf("resolving queue %s: %w", msg.QueueName(), err)
	}
	if deferred {
		m.defMu.Lock()
		m.deferred[msg.ID()] = msg
		m.defMu.Unlock()
		return nil
	}
	return m.o.Spool.Save(ctx, msg, !m.o.NoSync)
}

// undefer writes a deferred message to the spool (before its first delay).
func (m *Manager) undefer(ctx context.Context, msg *message.Message) {
	m.defMu.Lock()
	_, ok := m.deferred[msg.ID()]
	delete(m.deferred, msg.ID())
	m.defMu.Unlock()
	if !ok {
		return
	}
	if err := m.o.Spool.Save(ctx, msg, !m.o.NoSync); err != nil {
		m.log.Error().Err(err).Str("id", msg.ID()).Msg("writing a deferred-spool message to the spool")
	}
}

// dropDeferred forgets a deferred message; it reports whether it was one
// (and so has nothing on disk to remove).
func (m *Manager) dropDeferred(id string) bool {
	m.defMu.Lock()
	defer m.defMu.Unlock()
	_, ok := m.deferred[id]
	delete(m.deferred, id)
	return ok
}

// DeferredCount is the number of accepted messages held only in memory.
func (m *Manager) DeferredCount() int {
	m.defMu.Lock()
	defer m.defMu.Unlock()
	return len(m.deferred)
}

// Insert puts a spooled message into its scheduled queue, due now.
func (m *Manager) Insert(ctx context.Context, msg *message.Message) error {
	m.mu.Lock()
	closed := m.closed
	m.mu.Unlock()
	if closed {
		return errors.New("queue: shutting down")
	}
	e := &entry{msg: msg, queue: msg.QueueName(), index: -1}
	due := time.Now()
	if sch := msg.Scheduling(); sch != nil && sch.FirstAttempt.After(due) {
		due = sch.FirstAttempt
	}
	if d := msg.Scheduling().AdjustDue(due); d.After(time.Now()) {
		// set_scheduling: a later first attempt or a delivery window
		m.undefer(ctx, msg)
		m.schedule(e, d)
		return nil
	}
	m.promote(e)
	return nil
}

// Unspool removes a message whose insertion failed.
func (m *Manager) Unspool(ctx context.Context, msg *message.Message) {
	if err := m.o.Spool.Remove(ctx, msg.ID()); err != nil {
		m.log.Error().Err(err).Str("id", msg.ID()).Msg("removing message from spool")
	}
}

// Restore re-inserts a message found in the spool at start-up: its attempts
// are inferred from its age; a message older than max_age expires.
func (m *Manager) Restore(ctx context.Context, msg *message.Message) error {
	q := msg.QueueName()
	sq, err := m.schedQueue(ctx, q)
	if err != nil {
		return fmt.Errorf("resolving queue %s: %w", q, err)
	}
	age := time.Since(msg.Created())
	sch := msg.Scheduling()
	expired := age > sq.cfg.MaxAge
	if sch != nil && !sch.Expires.IsZero() {
		expired = sch.CheckExpiry(time.Now()) != nil
	}
	if expired {
		m.expire(&entry{msg: msg, queue: q}, sq, Response{Code: 551, Enhanced: &logrecord.EnhancedCode{Class: 5, Subject: 4, Detail: 7},
			Content: ExpiryText(age, sq.cfg.MaxAge)})
		return nil
	}
	attempts, dueIn := InferAttempts(&sq.cfg, age)
	msg.SetAttempts(attempts)
	e := &entry{msg: msg, queue: q, index: -1}
	if attempts == 0 {
		dueIn = 0
	}
	due := time.Now().Add(dueIn)
	if sch != nil && sch.FirstAttempt.After(due) {
		due = sch.FirstAttempt
	}
	due = sch.AdjustDue(due)
	if !due.After(time.Now()) {
		m.promote(e)
		return nil
	}
	m.schedule(e, due)
	return nil
}

// schedQueue returns the scheduled queue, creating or refreshing its
// config as needed.
func (m *Manager) schedQueue(ctx context.Context, name string) (*schedQueue, error) {
	if name == message.DeferredInjectQueue {
		// not a destination: only its retry interval (60 s) is used
		cfg := config.DefaultQueueConfig()
		cfg.RetryInterval = time.Minute
		return &schedQueue{name: name, parts: message.ParseQueueName(name), cfg: cfg, loaded: time.Now()}, nil
	}
	m.mu.Lock()
	sq := m.sched[name]
	if sq != nil && time.Since(sq.loaded) < m.o.ConfigTTL {
		m.mu.Unlock()
		return sq, nil
	}
	m.mu.Unlock()
	parts := message.ParseQueueName(name)
	var tenant, campaign, routing *string
	if parts.HasTenant {
		tenant = &parts.Tenant
	}
	if parts.HasCampaign {
		campaign = &parts.Campaign
	}
	if parts.HasRoutingDomain {
		routing = &parts.RoutingDomain
	}
	cfg, err := m.o.Policy.GetQueueConfig(ctx, parts.Domain, tenant, campaign, routing)
	if err != nil {
		return nil, err
	}
	m.noteUnimplemented("make_queue_config", cfg.Unimplemented)
	pool := config.EgressPool{Name: "unspecified", Entries: []config.EgressPoolEntry{{Name: "unspecified", Weight: 1}}}
	if cfg.EgressPool != "" && cfg.EgressPool != "unspecified" {
		if pool, err = m.o.Policy.GetEgressPool(ctx, cfg.EgressPool); err != nil {
			return nil, fmt.Errorf("egress pool %s: %w", cfg.EgressPool, err)
		}
	}
	routingDomain := parts.Domain
	if parts.HasRoutingDomain {
		routingDomain = parts.RoutingDomain
	}
	route, rerr := m.o.Router.Route(ctx, routingDomain, &cfg.Protocol)
	m.mu.Lock()
	defer m.mu.Unlock()
	old := m.sched[name]
	sq = &schedQueue{name: name, parts: parts, cfg: cfg, loaded: time.Now(), route: route, routeErr: rerr, pool: pool}
	if old != nil {
		sq.rr = old.rr
		sq.rate = limiterFor(old.rate, old.cfg.MaxMessageRate, cfg.MaxMessageRate)
	} else {
		sq.rate = limiterFor(nil, "", cfg.MaxMessageRate)
	}
	m.sched[name] = sq
	return sq, nil
}

// ---- timer wheel ----

type entryHeap []*entry

func (h entryHeap) Len() int           { return len(h) }
func (h entryHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h entryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}
func (h *entryHeap) Push(x any) {
	e := x.(*entry)
	e.index = len(*h)
	*h = append(*h, e)
}
func (h *entryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	e.index = -1
	return e
}

// shrinkAfter is how far in the future a message must be due before its
// body is dropped from memory (it is read back from the spool when due).
const shrinkAfter = 2 * time.Second

// schedule puts e into the timer heap, due at t. Messages due later than
// shrinkAfter give up their in-memory body, so a long outage costs memory
// per message, not per byte.
func (m *Manager) schedule(e *entry, t time.Time) {
	e.due = t
	if !e.shrunk && time.Until(t) > shrinkAfter && !m.isDeferred(e.msg.ID()) {
		e.msg.SetData(nil)
		e.shrunk = true
	}
	m.mu.Lock()
	heap.Push(&m.timers, e)
	first := m.timers[0] == e
	m.mu.Unlock()
	if first {
		select {
		case m.wake <- struct{}{}:
		default:
		}
	}
}

// ScheduledCount returns the number of messages waiting in the timer heap.
func (m *Manager) ScheduledCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.timers)
}

func (m *Manager) timerLoop() {
	defer m.wg.Done()
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		m.mu.Lock()
		var due []*entry
		now := time.Now()
		for len(m.timers) > 0 && !m.timers[0].due.After(now) {
			due = append(due, heap.Pop(&m.timers).(*entry))
		}
		wait := time.Hour
		if len(m.timers) > 0 {
			wait = m.timers[0].due.Sub(now)
		}
		m.mu.Unlock()
		for _, e := range due {
			m.promote(e)
		}
		t.Reset(wait)
		select {
		case <-m.ctx.Done():
			return
		case <-m.wake:
		case <-t.C:
		}
	}
}

// ---- scheduled → ready ----

// isDeferred reports whether a message is held only in memory
// (deferred_spool), so its body must not be dropped.
func (m *Manager) isDeferred(id string) bool {
	m.defMu.Lock()
	defer m.defMu.Unlock()
	_, ok := m.deferred[id]
	return ok
}

// promote moves a due message to the ready queue of its egress path.
func (m *Manager) promote(e *entry) {
	ctx := m.ctx
	if e.shrunk {
		data, err := m.o.Spool.LoadData(ctx, e.msg.ID())
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			m.log.Error().Err(err).Str("id", e.msg.ID()).Msg("reading a queued message back from the spool; retrying in a minute")
			m.schedule(e, time.Now().Add(time.Minute))
			return
		}
		e.msg.SetData(data)
		e.shrunk = false
	}
	if e.queue == message.DeferredInjectQueue {
		m.deferredInject(e)
		return
	}
	sq, err := m.schedQueue(ctx, e.queue)
	if err != nil {
		m.transient(e, nil, nil, Response{Code: 451, Enhanced: &logrecord.EnhancedCode{Class: 4, Subject: 4, Detail: 4},
			Content: fmt.Sprintf("failed to resolve queue %s: %v", e.queue, err)}, "")
		return
	}
	if sq.routeErr != nil {
		var re *ResponseError
		if errors.As(sq.routeErr, &re) && re.Response.Code >= 500 {
			m.finish(e, sq, nil, nil, logrecord.Bounce, re.Response, e.msg.Recipients())
			return
		}
		resp := Response{Code: 451, Enhanced: &logrecord.EnhancedCode{Class: 4, Subject: 4, Detail: 4},
			Content: fmt.Sprintf("failed to resolve queue %s: %v", e.queue, sq.routeErr)}
		if errors.As(sq.routeErr, &re) {
			resp = re.Response
		}
		// force a fresh resolution next time
		m.mu.Lock()
		if cur := m.sched[e.queue]; cur == sq {
			delete(m.sched, e.queue)
		}
		m.mu.Unlock()
		m.transient(e, sq, nil, resp, "")
		return
	}
	if sq.rate != nil {
		if r := sq.rate.AllowAt(time.Now()); r.Throttled {
			// max_message_rate: try again when a slot frees, attempts unchanged
			m.schedule(e, time.Now().Add(r.RetryAfter))
			return
		}
	}
	if m.throttleEvent(e) {
		return
	}
	src := m.pickSource(sq)
	rq, err := m.readyQueue(ctx, sq, src)
	if err != nil {
		m.transient(e, sq, nil, Response{Code: 451, Enhanced: &logrecord.EnhancedCode{Class: 4, Subject: 4, Detail: 4},
			Content: fmt.Sprintf("failed to resolve queue %s: %v", e.queue, err)}, "")
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
	rq.push(e)
}

// deferredInject moves a message out of message.DeferredInjectQueue (a
// deferred_queue listener received it) by running
// smtp_server_message_deferred_inject: on success the message is rebound
// to the queue its meta now names (a DeferredInjectionRebind record) and
// goes on there; a rejection of 500 or more bounces it; any other failure
// is a transient failure, retried from the internal queue every minute.
func (m *Manager) deferredInject(e *entry) {
	msg := e.msg
	// the handler sets the real queue, or the default naming applies
	msg.DeleteMeta("queue")
	var err error
	if dp, ok := m.o.Policy.(DeferredInjectPolicy); ok && m.o.Policy.HasHandler("smtp_server_message_deferred_inject") {
		ctx, cancel := context.WithTimeout(m.ctx, time.Minute)
		err = dp.DeferredInject(ctx, msg)
		cancel()
	}
	if err != nil {
		msg.SetMeta("queue", message.DeferredInjectQueue)
		resp := Response{Code: 400, Content: "smtp_server_message_deferred_inject: " + err.Error()}
		var rej *smtpreply.Rejection
		if errors.As(err, &rej) {
			resp = Response{Code: rej.Code, Content: rej.Text}
			if cl, sub, det, rest, ok := smtpreply.SplitEnhanced(rej.Text); ok {
				resp.Enhanced = &logrecord.EnhancedCode{Class: cl, Subject: sub, Detail: det}
				resp.Content = rest
			}
		}
		if resp.Code >= 500 {
			m.finish(e, nil, nil, nil, logrecord.Bounce, resp, msg.Recipients())
			return
		}
		sq, _ := m.schedQueue(m.ctx, message.DeferredInjectQueue)
		m.transient(e, sq, nil, resp, "")
		return
	}
	e.queue = msg.QueueName()
	if e.queue == message.DeferredInjectQueue {
		msg.DeleteMeta("queue") // the handler put it back: use the default naming
		e.queue = msg.QueueName()
	}
	m.record(logrecord.DeferredInjectionRebind, e, nil, nil, Response{}, msg.Recipients())
	if e.queue == "null" {
		// as at reception: queue null discards the message
		if err := m.o.Spool.Remove(context.Background(), msg.ID()); err != nil {
			m.log.Error().Err(err).Str("id", msg.ID()).Msg("removing a message rebound to queue null from the spool")
		}
		return
	}
	m.promote(e)
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
func (m *Manager) readyQueue(ctx context.Context, sq *schedQueue, source string) (*readyQueue, error) {
	site := sq.route.Site()
	name := source + "->" + site + "@smtp_client"
	m.mu.Lock()
	rq := m.ready[name]
	m.mu.Unlock()
	if rq != nil && time.Since(rq.loaded) < time.Minute {
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
		cur.update(path, src, sq.route, sq.pool.Name)
		return cur, nil
	}
	rq = newReadyQueue(m, name, site, path, src, sq.route, sq.pool.Name)
	m.ready[name] = rq
	return rq, nil
}

// ---- outcomes ----

func (m *Manager) record(t logrecord.Type, e *entry, rq *readyQueue, info *ConnInfo, resp Response, rcpts []message.Address) {
	if m.o.Logger == nil || !m.o.Logger.Enabled() {
		return
	}
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
		Size:              int64(e.msg.Size()),
		Response:          logrecord.Response{Code: resp.Code, Enhanced: resp.Enhanced, Content: resp.Content, Command: resp.Command},
		Timestamp:         time.Now(),
		Created:           e.msg.Created(),
		NumAttempts:       e.msg.Attempts(),
		ReceptionProtocol: rp,
		NodeID:            m.o.NodeID,
	}
	if rq != nil {
		rec.Site = rq.name
		rec.EgressSource = rq.src.Name
		rec.EgressPool = rq.pool
		rec.DeliveryProtocol = "ESMTP"
	}
	if info != nil {
		rec.PeerAddress = &logrecord.PeerAddress{Name: info.PeerName, Addr: info.PeerAddr}
		if info.SourceAddr != "" {
			rec.SourceAddress = &logrecord.SourceAddress{Address: info.SourceAddr}
		}
		rec.TLSCipher = info.TLSCipher
		rec.TLSProtocolVersion = info.TLSVersion
		rec.SessionID = info.SessionID
	}
	m.o.Logger.Log(rec, e.msg)
}

// finish logs a final disposition for rcpts and removes the message from the
// spool when no recipient is left.
func (m *Manager) finish(e *entry, sq *schedQueue, rq *readyQueue, info *ConnInfo, t logrecord.Type, resp Response, rcpts []message.Address) {
	m.record(t, e, rq, info, resp, rcpts)
	remaining := withoutRecipients(e.msg.Recipients(), rcpts)
	if len(remaining) > 0 {
		e.msg.SetRecipients(remaining)
		return
	}
	if m.dropDeferred(e.msg.ID()) {
		return
	}
	if err := m.o.Spool.Remove(m.ctx, e.msg.ID()); err != nil && m.ctx.Err() == nil {
		m.log.Error().Err(err).Str("id", e.msg.ID()).Msg("removing delivered message from spool")
	}
}

func withoutRecipients(all, done []message.Address) []message.Address {
	if len(done) == len(all) {
		return nil
	}
	var out []message.Address
	for _, a := range all {
		found := false
		for _, d := range done {
			if a == d {
				found = true
				break
			}
		}
		if !found {
			out = append(out, a)
		}
	}
	return out
}

// transient logs a TransientFailure and reschedules the message with
// backoff, or expires it when the next attempt would exceed max_age.
func (m *Manager) transient(e *entry, sq *schedQueue, rq *readyQueue, resp Response, _ string) {
	m.transientWithInfo(e, sq, rq, nil, resp)
}

func (m *Manager) transientWithInfo(e *entry, sq *schedQueue, rq *readyQueue, info *ConnInfo, resp Response) {
	m.record(logrecord.TransientFailure, e, rq, info, resp, e.msg.Recipients())
	if moved, done := m.requeueEvent(e, resp); done {
		return
	} else if moved {
		e.msg.IncrementAttempts()
		m.undefer(context.Background(), e.msg)
		m.promote(e)
		return
	}
	cfg := config.DefaultQueueConfig()
	if sq != nil {
		cfg = sq.cfg
	}
	m.mu.Lock()
	delay := NextDelay(&cfg, e.msg.Attempts(), m.rnd)
	closed := m.closed
	m.mu.Unlock()
	e.msg.IncrementAttempts()
	age := time.Since(e.msg.Created())
	sch := e.msg.Scheduling()
	due := sch.AdjustDue(time.Now().Add(delay))
	if sch != nil && !sch.Expires.IsZero() {
		// set_scheduling's expires replaces max_age
		if sch.CheckExpiry(due) != nil {
			m.expire(e, sq, Response{Code: 551, Enhanced: &logrecord.EnhancedCode{Class: 5, Subject: 4, Detail: 7},
				Content: fmt.Sprintf("Next delivery time would be at %s which exceeds the expiry time %s configured via set_scheduling",
					due.UTC().Format(time.RFC3339), sch.Expires.UTC().Format(time.RFC3339))})
			return
		}
	} else if age+delay > cfg.MaxAge {
		m.expire(e, sq, Response{Code: 551, Enhanced: &logrecord.EnhancedCode{Class: 5, Subject: 4, Detail: 7},
			Content: ExpiryText(age+delay, cfg.MaxAge)})
		return
	}
	m.undefer(context.Background(), e.msg)
	if closed {
		return // stays in the spool for the next start
	}
	m.schedule(e, due)
}

func (m *Manager) expire(e *entry, sq *schedQueue, resp Response) {
	m.record(logrecord.Expiration, e, nil, nil, resp, e.msg.Recipients())
	if m.dropDeferred(e.msg.ID()) {
		return
	}
	if err := m.o.Spool.Remove(context.Background(), e.msg.ID()); err != nil {
		m.log.Error().Err(err).Str("id", e.msg.ID()).Msg("removing expired message from spool")
	}
}

var _ = strings.TrimSpace

// requeueEvent runs requeue_message for a transient failure. moved is true
// when the policy changed the message's queue (it is then due at once in
// its new queue); done is true when the policy rejected it (it bounced).
func (m *Manager) requeueEvent(e *entry, resp Response) (moved, done bool) {
	ep, ok := m.o.Policy.(EventPolicy)
	if !ok || !m.o.Policy.HasHandler("requeue_message") {
		return false, false
	}
	ctx, cancel := context.WithTimeout(m.ctx, time.Minute)
	defer cancel()
	before := e.msg.QueueName()
	err := ep.RequeueMessage(ctx, e.msg, resp.String(), []string{"TransientFailure"}, true, nil)
	var rej interface{ Closes() bool }
	if err != nil && errors.As(err, &rej) {
		m.finish(e, nil, nil, nil, logrecord.Bounce, Response{Code: 500, Content: err.Error()}, e.msg.Recipients())
		return false, true
	}
	if err != nil {
		m.log.Error().Err(err).Str("id", e.msg.ID()).Msg("requeue_message failed; keeping the message in its queue")
		return false, false
	}
	if after := e.msg.QueueName(); after != before {
		e.queue = after
		return true, false
	}
	return false, false
}

// rewriteStatus runs smtp_client_rewrite_delivery_status for a non-2xx
// response and applies a changed code, noting the change in the text.
func (m *Manager) rewriteStatus(e *entry, r Response) Response {
	if r.Code >= 200 && r.Code < 300 {
		return r
	}
	ep, ok := m.o.Policy.(EventPolicy)
	if !ok || !m.o.Policy.HasHandler("smtp_client_rewrite_delivery_status") {
		return r
	}
	p := message.ParseQueueName(e.queue)
	rd := p.Domain
	if p.HasRoutingDomain {
		rd = p.RoutingDomain
	}
	ctx, cancel := context.WithTimeout(m.ctx, time.Minute)
	defer cancel()
	code, changed, err := ep.RewriteDeliveryStatus(ctx, r.String(), p.Domain, p.Tenant, p.Campaign, rd)
	if err != nil {
		m.log.Error().Err(err).Msg("smtp_client_rewrite_delivery_status failed; status kept")
		return r
	}
	if changed && code != r.Code {
		r.Content = fmt.Sprintf("%s (kumomta: status was rewritten from %d -> %d)", r.Content, r.Code, code)
		r.Code = code
	}
	return r
}

// throttleEvent runs throttle_insert_ready_queue; when the policy pushed the
// message's due time into the future (for example with a throttle's
// delay_message_if_throttled) it is rescheduled without counting an
// attempt, and true is returned.
func (m *Manager) throttleEvent(e *entry) bool {
	ep, ok := m.o.Policy.(EventPolicy)
	if !ok || !m.o.Policy.HasHandler("throttle_insert_ready_queue") {
		return false
	}
	ctx, cancel := context.WithTimeout(m.ctx, time.Minute)
	defer cancel()
	e.msg.SetDue(time.Time{})
	if err := ep.ThrottleInsertReadyQueue(ctx, e.msg); err != nil {
		m.log.Error().Err(err).Str("id", e.msg.ID()).Msg("throttle_insert_ready_queue failed")
		return false
	}
	if due := e.msg.Due(); !due.IsZero() && due.After(time.Now()) {
		m.undefer(ctx, e.msg)
		m.schedule(e, due)
		return true
	}
	return false
}
