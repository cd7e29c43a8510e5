package queue

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/logrecord"
	"github.com/kumogo/kumogo/internal/message"
	"github.com/kumogo/kumogo/internal/smtpreply"
	"github.com/kumogo/kumogo/internal/testutil"
)

type fakePolicy struct {
	cfg  config.QueueConfig
	path config.EgressPath
	err  error
}

func (p *fakePolicy) HasHandler(string) bool { return true }
func (p *fakePolicy) GetQueueConfig(ctx context.Context, domain string, tenant, campaign, routing *string) (config.QueueConfig, error) {
	return p.cfg, p.err
}
func (p *fakePolicy) GetEgressPathConfig(ctx context.Context, rd, src, site string) (config.EgressPath, error) {
	return p.path, nil
}
func (p *fakePolicy) GetEgressSource(ctx context.Context, name string) (config.EgressSource, error) {
	return config.EgressSource{Name: name}, nil
}
func (p *fakePolicy) GetEgressPool(ctx context.Context, name string) (config.EgressPool, error) {
	return config.EgressPool{Name: name, Entries: []config.EgressPoolEntry{{Name: "a", Weight: 1}}}, nil
}

type memSpool struct {
	mu    sync.Mutex
	ids   map[string]bool
	data  map[string][]byte
	metas map[string]*message.Message // envelope and meta as stored
	saves atomic.Int64
	loads atomic.Int64
	// metaSaves counts SaveMeta calls
	metaSaves atomic.Int64
}

// notFound is the memSpool's error for an id it does not hold.
type notFound struct{}

func (notFound) Error() string  { return "not found" }
func (notFound) NotFound() bool { return true }

// snapshot copies what a spool stores of m: envelope, meta and
// scheduling (not the attempts, not the body).
func snapshot(m *message.Message) *message.Message {
	meta := map[string]any{}
	for k, v := range m.MetaMap() {
		meta[k] = v
	}
	c, err := message.Restore(m.ID(), m.Sender(), append([]message.Address(nil), m.Recipients()...), meta, nil)
	if err != nil {
		panic(err)
	}
	c.SetScheduling(m.Scheduling())
	return c
}

func (s *memSpool) Load(ctx context.Context, id string) (*message.Message, error) {
	s.loads.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	meta, ok := s.metas[id]
	d, ok2 := s.data[id]
	if !ok || !ok2 || !s.ids[id] {
		return nil, notFound{}
	}
	c := snapshot(meta)
	c.SetData(append([]byte(nil), d...))
	return c, nil
}

func (s *memSpool) SaveMeta(ctx context.Context, m *message.Message, sync bool) error {
	s.metaSaves.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.metas == nil {
		s.metas = map[string]*message.Message{}
	}
	s.metas[m.ID()] = snapshot(m)
	return nil
}

func (s *memSpool) LoadData(ctx context.Context, id string) ([]byte, error) {
	s.loads.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.data[id]
	if !ok {
		return nil, errors.New("not found")
	}
	return d, nil
}

func (s *memSpool) Save(ctx context.Context, m *message.Message, sync bool) error {
	s.saves.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ids[m.ID()] = true
	if s.data == nil {
		s.data = map[string][]byte{}
	}
	s.data[m.ID()] = append([]byte(nil), m.Data()...)
	if s.metas == nil {
		s.metas = map[string]*message.Message{}
	}
	s.metas[m.ID()] = snapshot(m)
	return nil
}
func (s *memSpool) Remove(ctx context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.ids, id)
	return nil
}
func (s *memSpool) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.ids)
}

type recLog = testutil.RecordLog

type siteRoute string

func (s siteRoute) Site() string { return string(s) }

type fakeRouter struct{ err error }

func (r *fakeRouter) Route(ctx context.Context, rd string, p *config.QueueProtocol) (Route, error) {
	if r.err != nil {
		return nil, r.err
	}
	return siteRoute("mx." + rd), nil
}

// fakeConnector answers each message per script(recipient user, attempt).
type fakeConnector struct {
	onSend  func(m *message.Message)
	conns   atomic.Int64
	sends   atomic.Int64
	mu      sync.Mutex
	tries   map[string]int
	script  func(user string, attempt int) smtpreply.Response
	connErr error
}

func (c *fakeConnector) Connect(ctx context.Context, r Route, p *config.EgressPath, s *config.EgressSource) (Conn, error) {
	if c.connErr != nil {
		return nil, c.connErr
	}
	c.conns.Add(1)
	return &fakeConn{c: c}, nil
}

type fakeConn struct {
	c      *fakeConnector
	broken bool
}

func (f *fakeConn) Send(ctx context.Context, m *message.Message) ([]RcptResponse, error) {
	f.c.sends.Add(1)
	if f.c.onSend != nil {
		f.c.onSend(m)
	}
	var out []RcptResponse
	for _, r := range m.Recipients() {
		f.c.mu.Lock()
		n := f.c.tries[r.User]
		f.c.tries[r.User] = n + 1
		f.c.mu.Unlock()
		out = append(out, RcptResponse{Recipient: r, Response: f.c.script(r.User, n)})
	}
	return out, nil
}
func (f *fakeConn) Usable() bool { return !f.broken }
func (f *fakeConn) Info() ConnInfo {
	return ConnInfo{PeerName: "mx.test", PeerAddr: "127.0.0.1:25", SessionID: "s1"}
}
func (f *fakeConn) Close() {}

type harness struct {
	m     *Manager
	spool *memSpool
	log   *recLog
	conn  *fakeConnector
	pol   *fakePolicy
	gen   *message.IDGenerator
}

func newHarness(t *testing.T, cfg config.QueueConfig, script func(string, int) smtpreply.Response) *harness {
	t.Helper()
	h := &harness{spool: &memSpool{ids: map[string]bool{}}, log: &recLog{},
		conn: &fakeConnector{tries: map[string]int{}, script: script},
		pol:  &fakePolicy{cfg: cfg, path: config.DefaultEgressPath()}, gen: message.NewIDGenerator()}
	h.pol.path.IdleTimeout = 200 * time.Millisecond
	m, err := New(Options{Policy: h.pol, Spool: h.spool, Logger: h.log, Router: &fakeRouter{}, Connector: h.conn, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	m.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		m.Shutdown(ctx)
	})
	h.m = m
	return h
}

func (h *harness) inject(t *testing.T, users ...string) *message.Message {
	t.Helper()
	var rc []message.Address
	for _, u := range users {
		rc = append(rc, message.Address{User: u, Domain: "example.com"})
	}
	m := message.New(h.gen, message.Address{User: "s", Domain: "x.com"}, rc, []byte("Subject: t\r\n\r\nbody\r\n"))
	ctx := context.Background()
	if err := h.m.Spool(ctx, m, false); err != nil {
		t.Fatal(err)
	}
	if err := h.m.Insert(ctx, m); err != nil {
		t.Fatal(err)
	}
	return m
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func ok250(string, int) smtpreply.Response { return smtpreply.Response{Code: 250, Content: "ok"} }

func TestDeliveryRemovesFromSpoolAndReusesConnections(t *testing.T) {
	h := newHarness(t, config.DefaultQueueConfig(), ok250)
	for i := 0; i < 200; i++ {
		h.inject(t, fmt.Sprintf("u%d", i))
	}
	waitFor(t, "200 deliveries", 5*time.Second, func() bool { return h.log.Count(logrecord.Delivery) == 200 })
	if h.spool.len() != 0 {
		t.Fatalf("%d messages left in spool", h.spool.len())
	}
	if c := h.conn.conns.Load(); c > 32 || c < 1 {
		t.Fatalf("%d connections for 200 messages (limit 32)", c)
	}
	r := h.log.All()[0]
	if r.Site != "unspecified->mx.example.com@smtp_client" || r.EgressSource != "unspecified" || r.EgressPool != "unspecified" ||
		r.PeerAddress == nil || r.PeerAddress.Name != "mx.test" || r.Queue != "example.com" || r.DeliveryProtocol != "ESMTP" || r.SessionID != "s1" {
		t.Fatalf("delivery record %+v", r)
	}
}

func TestTransientRetryThenDelivery(t *testing.T) {
	cfg := config.DefaultQueueConfig()
	cfg.RetryInterval = 300 * time.Millisecond
	h := newHarness(t, cfg, func(u string, n int) smtpreply.Response {
		if n < 2 {
			return smtpreply.Response{Code: 451, Enhanced: &smtpreply.EnhancedCode{Class: 4, Subject: 3, Detail: 0}, Content: "try later"}
		}
		return smtpreply.Response{Code: 250, Content: "ok"}
	})
	start := time.Now()
	h.inject(t, "r")
	waitFor(t, "delivery", 10*time.Second, func() bool { return h.log.Count(logrecord.Delivery) == 1 })
	recs := h.log.All()
	if len(recs) != 3 || recs[0].Type != logrecord.TransientFailure || recs[1].Type != logrecord.TransientFailure {
		t.Fatalf("records %+v", recs)
	}
	if recs[0].NumAttempts != 0 || recs[1].NumAttempts != 1 || recs[2].NumAttempts != 2 {
		t.Fatalf("attempts %d %d %d", recs[0].NumAttempts, recs[1].NumAttempts, recs[2].NumAttempts)
	}
	// delays: 300ms ±7.5ms, then 600ms ±7.5ms
	gap1 := recs[1].Timestamp.Sub(recs[0].Timestamp)
	gap2 := recs[2].Timestamp.Sub(recs[1].Timestamp)
	if gap1 < 290*time.Millisecond || gap1 > 600*time.Millisecond || gap2 < 590*time.Millisecond || gap2 > 1200*time.Millisecond {
		t.Fatalf("retry gaps %v %v (since start %v)", gap1, gap2, time.Since(start))
	}
	if h.spool.len() != 0 {
		t.Fatal("delivered message left in spool")
	}
}

func TestBounceAndPartial(t *testing.T) {
	cfg := config.DefaultQueueConfig()
	cfg.RetryInterval = 200 * time.Millisecond
	h := newHarness(t, cfg, func(u string, n int) smtpreply.Response {
		switch {
		case u == "perm":
			return smtpreply.Response{Code: 550, Enhanced: &smtpreply.EnhancedCode{Class: 5, Subject: 1, Detail: 1}, Content: "no such user"}
		case u == "temp" && n == 0:
			return smtpreply.Response{Code: 452, Content: "mailbox full"}
		}
		return smtpreply.Response{Code: 250, Content: "ok"}
	})
	h.inject(t, "perm", "temp", "good")
	waitFor(t, "final", 5*time.Second, func() bool { return h.spool.len() == 0 })
	got := map[logrecord.Type][]string{}
	for _, r := range h.log.All() {
		got[r.Type] = append(got[r.Type], r.Recipient...)
	}
	if fmt.Sprint(got[logrecord.Bounce]) != "[perm@example.com]" || fmt.Sprint(got[logrecord.TransientFailure]) != "[temp@example.com]" ||
		fmt.Sprint(got[logrecord.Delivery]) != "[good@example.com temp@example.com]" {
		t.Fatalf("records by type %v", got)
	}
}

func TestExpiration(t *testing.T) {
	cfg := config.DefaultQueueConfig()
	cfg.RetryInterval = 2 * time.Second
	cfg.MaxAge = time.Second
	h := newHarness(t, cfg, func(string, int) smtpreply.Response { return smtpreply.Response{Code: 421, Content: "busy"} })
	h.inject(t, "r")
	waitFor(t, "expiration", 5*time.Second, func() bool { return h.log.Count(logrecord.Expiration) == 1 })
	var exp logrecord.Record
	for _, r := range h.log.All() {
		if r.Type == logrecord.Expiration {
			exp = r
		}
	}
	if exp.Response.Code != 551 || exp.Response.Enhanced == nil || exp.Response.Enhanced.Detail != 7 ||
		exp.Response.Content[:27] != "Next delivery time would be" || h.spool.len() != 0 {
		t.Fatalf("expiration %+v, spool %d", exp, h.spool.len())
	}
}

func TestRouteErrors(t *testing.T) {
	h := newHarness(t, config.DefaultQueueConfig(), ok250)
	h.m.o.Router = &fakeRouter{err: &smtpreply.Error{Response: smtpreply.Response{Code: 556, Enhanced: &smtpreply.EnhancedCode{Class: 5, Subject: 1, Detail: 10}, Content: "Recipient address has a null MX"}}}
	h.inject(t, "r")
	waitFor(t, "bounce", 2*time.Second, func() bool { return h.log.Count(logrecord.Bounce) == 1 })
	if h.spool.len() != 0 {
		t.Fatal("bounced message left in spool")
	}
	h2 := newHarness(t, config.DefaultQueueConfig(), ok250)
	h2.m.o.Router = &fakeRouter{err: errors.New("SERVFAIL")}
	h2.inject(t, "r")
	waitFor(t, "transient", 2*time.Second, func() bool { return h2.log.Count(logrecord.TransientFailure) == 1 })
	r := h2.log.All()[0]
	if r.Response.Code != 451 || r.Response.Content != "failed to resolve queue example.com: SERVFAIL" || h2.spool.len() != 1 {
		t.Fatalf("%+v", r)
	}
}

func TestConnectFailureIsTransient(t *testing.T) {
	h := newHarness(t, config.DefaultQueueConfig(), ok250)
	h.conn.connErr = errors.New("connection refused")
	h.inject(t, "r")
	waitFor(t, "transient", 2*time.Second, func() bool { return h.log.Count(logrecord.TransientFailure) == 1 })
	r := h.log.All()[0]
	if r.Response.Code != 400 || r.Response.Content != "KumoMTA internal: failed to connect to any candidate hosts: connection refused" {
		t.Fatalf("%+v", r)
	}
	if h.m.ScheduledCount() != 1 || h.spool.len() != 1 {
		t.Fatal("message should wait for its retry")
	}
}

func TestRestoreInfersAttempts(t *testing.T) {
	h := newHarness(t, config.DefaultQueueConfig(), ok250)
	fresh := message.New(h.gen, message.Address{User: "s", Domain: "x.com"}, []message.Address{{User: "a", Domain: "example.com"}}, []byte("x\r\n"))
	if err := h.m.Restore(context.Background(), fresh); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "delivery of a fresh restored message", 2*time.Second, func() bool { return h.log.Count(logrecord.Delivery) == 1 })
}

func TestDispatchersFormula(t *testing.T) {
	for _, tc := range []struct{ limit, n, want int }{
		{32, 1, 1}, {32, 4, 3}, {32, 10, 7}, {32, 32, 17}, {32, 128, 31}, {32, 0, 0}, {1, 100, 1},
	} {
		if got := Dispatchers(tc.limit, tc.n); got != tc.want {
			t.Errorf("Dispatchers(%d,%d)=%d want %d", tc.limit, tc.n, got, tc.want)
		}
	}
}

func TestDeferredSpool(t *testing.T) {
	cfg := config.DefaultQueueConfig()
	cfg.RetryInterval = 200 * time.Millisecond
	h := newHarness(t, cfg, func(u string, n int) smtpreply.Response {
		if u == "later" && n == 0 {
			return smtpreply.Response{Code: 451, Content: "later"}
		}
		return smtpreply.Response{Code: 250, Content: "ok"}
	})
	ctx := context.Background()
	mk := func(u string) *message.Message {
		return message.New(h.gen, message.Address{User: "s", Domain: "x.com"}, []message.Address{{User: u, Domain: "example.com"}}, []byte("x\r\n"))
	}
	now, later := mk("now"), mk("later")
	for _, m := range []*message.Message{now, later} {
		if err := h.m.Spool(ctx, m, true); err != nil {
			t.Fatal(err)
		}
	}
	if h.spool.len() != 0 || h.m.DeferredCount() != 2 {
		t.Fatal("deferred messages must not be written at reception")
	}
	h.m.Insert(ctx, now)
	h.m.Insert(ctx, later)
	waitFor(t, "both delivered", 5*time.Second, func() bool { return h.log.Count(logrecord.Delivery) == 2 })
	h.spool.mu.Lock()
	wrote := len(h.spool.ids)
	h.spool.mu.Unlock()
	if wrote != 0 || h.m.DeferredCount() != 0 {
		t.Fatalf("spool %d deferred %d", wrote, h.m.DeferredCount())
	}
	// the delayed one was written before its retry: check via a save counter
	if h.spool.saves.Load() != 1 {
		t.Fatalf("want exactly one spool write (the delayed message), got %d", h.spool.saves.Load())
	}
	// a deferred message still held at shutdown is written
	held := mk("held")
	h.m.Spool(ctx, held, true)
	sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	h.m.Shutdown(sctx)
	if h.spool.len() != 1 {
		t.Fatal("a deferred message must be written at shutdown")
	}
}

// eventPolicy adds requeue_message and smtp_client_rewrite_delivery_status.
type eventPolicy struct {
	*fakePolicy
	requeue  func(m *message.Message, resp string) error
	rewrite  func(resp string) (int, bool)
	throttle func(m *message.Message)
}

func (p *eventPolicy) ThrottleInsertReadyQueue(ctx context.Context, m *message.Message) error {
	if p.throttle != nil {
		p.throttle(m)
	}
	return nil
}

func (p *eventPolicy) HasHandler(e string) bool {
	switch e {
	case "throttle_insert_ready_queue":
		return p.throttle != nil
	case "requeue_message":
		return p.requeue != nil
	case "smtp_client_rewrite_delivery_status":
		return p.rewrite != nil
	}
	return false
}
func (p *eventPolicy) RequeueMessage(ctx context.Context, m *message.Message, resp string, ic []string, inc bool, d *time.Duration) error {
	return p.requeue(m, resp)
}
func (p *eventPolicy) RewriteDeliveryStatus(ctx context.Context, resp, d, t, c, rd string) (int, bool, error) {
	code, ok := p.rewrite(resp)
	return code, ok, nil
}

func TestRecipientBatchesAndRates(t *testing.T) {
	h := newHarness(t, config.DefaultQueueConfig(), ok250)
	h.pol.path.MaxRecipientsPerBatch = 2
	h.pol.path.MaxMessageRate = "20/s"
	h.inject(t, "a", "b", "c", "d", "e")
	waitFor(t, "delivery", 5*time.Second, func() bool { return h.log.Count(logrecord.Delivery) >= 1 })
	if s := h.conn.sends.Load(); s != 3 {
		t.Fatalf("5 recipients in batches of 2 need 3 transactions, got %d", s)
	}
	// 20/s: 30 more messages take at least about a second after the burst
	start := time.Now()
	for i := 0; i < 30; i++ {
		h.inject(t, fmt.Sprintf("r%d", i))
	}
	waitFor(t, "rate-limited deliveries", 10*time.Second, func() bool { return h.conn.sends.Load() == 33 })
	if el := time.Since(start); el < 400*time.Millisecond {
		t.Fatalf("max_message_rate=20/s not applied: 33 sends in %v", el)
	}
}

func TestRewriteStatusAndRequeueMove(t *testing.T) {
	cfg := config.DefaultQueueConfig()
	cfg.RetryInterval = time.Hour
	h := newHarness(t, cfg, func(u string, n int) smtpreply.Response {
		return smtpreply.Response{Code: 550, Content: "blocked for now"}
	})
	ep := &eventPolicy{fakePolicy: h.pol}
	ep.rewrite = func(resp string) (int, bool) {
		if strings.Contains(resp, "blocked for now") {
			return 451, true
		}
		return 0, false
	}
	moved := 0
	ep.requeue = func(m *message.Message, resp string) error {
		if m.QueueName() == "example.com" {
			moved++
			m.SetMeta("queue", "elsewhere.example")
		}
		return nil
	}
	h.m.o.Policy = ep
	h.inject(t, "r")
	waitFor(t, "two transient failures", 5*time.Second, func() bool { return h.log.Count(logrecord.TransientFailure) == 2 })
	recs := h.log.All()
	if recs[0].Response.Code != 451 || recs[0].Response.Content != "blocked for now (kumomta: status was rewritten from 550 -> 451)" {
		t.Fatalf("rewritten record %+v", recs[0].Response)
	}
	if moved != 1 || recs[1].Queue != "elsewhere.example" || recs[1].NumAttempts != 1 {
		t.Fatalf("requeue move: moved=%d %+v", moved, recs[1])
	}
}

func TestMaxReadyOverflowGoesBack(t *testing.T) {
	h := newHarness(t, config.DefaultQueueConfig(), func(string, int) smtpreply.Response {
		time.Sleep(50 * time.Millisecond)
		return smtpreply.Response{Code: 250, Content: "ok"}
	})
	h.pol.path.MaxReady = 2
	h.pol.path.ConnectionLimit = 1
	for i := 0; i < 6; i++ {
		h.inject(t, fmt.Sprintf("r%d", i))
	}
	// the first promotion looks the destination up in the background
	waitFor(t, "overflow beyond max_ready waiting in the scheduled queue", 2*time.Second, func() bool { return h.m.ScheduledCount() >= 2 })
}

func TestThrottleInsertReadyQueueDelays(t *testing.T) {
	h := newHarness(t, config.DefaultQueueConfig(), ok250)
	ep := &eventPolicy{fakePolicy: h.pol}
	var calls atomic.Int64
	ep.throttle = func(m *message.Message) {
		if calls.Add(1) == 1 {
			m.SetDue(time.Now().Add(300 * time.Millisecond))
		}
	}
	h.m.o.Policy = ep
	start := time.Now()
	h.inject(t, "r")
	waitFor(t, "delivery", 5*time.Second, func() bool { return h.log.Count(logrecord.Delivery) == 1 })
	if el := time.Since(start); el < 250*time.Millisecond || calls.Load() != 2 {
		t.Fatalf("throttle delay not applied: %v, %d calls", el, calls.Load())
	}
	if r := h.log.All()[0]; r.NumAttempts != 0 || h.log.Count(logrecord.TransientFailure) != 0 {
		t.Fatalf("a throttle delay is not an attempt: %+v", r)
	}
}

func TestSetSchedulingFirstAttemptAndExpires(t *testing.T) {
	cfg := config.DefaultQueueConfig()
	cfg.RetryInterval = 300 * time.Millisecond
	h := newHarness(t, cfg, func(u string, n int) smtpreply.Response {
		if u == "temp" {
			return smtpreply.Response{Code: 451, Content: "later"}
		}
		return smtpreply.Response{Code: 250, Content: "ok"}
	})
	ctx := context.Background()
	mk := func(u string) *message.Message {
		return message.New(h.gen, message.Address{User: "s", Domain: "x.com"}, []message.Address{{User: u, Domain: "example.com"}}, []byte("x\r\n"))
	}
	later := mk("later")
	later.SetScheduling(&message.Scheduling{FirstAttempt: time.Now().Add(400 * time.Millisecond)})
	start := time.Now()
	h.m.Spool(ctx, later, false)
	h.m.Insert(ctx, later)
	waitFor(t, "the deferred first attempt", 5*time.Second, func() bool { return h.log.Count(logrecord.Delivery) == 1 })
	if el := time.Since(start); el < 350*time.Millisecond {
		t.Fatalf("first_attempt not honoured: delivered after %v", el)
	}
	temp := mk("temp")
	temp.SetScheduling(&message.Scheduling{Expires: time.Now().Add(100 * time.Millisecond)})
	h.m.Spool(ctx, temp, false)
	h.m.Insert(ctx, temp)
	waitFor(t, "expiry by set_scheduling", 5*time.Second, func() bool { return h.log.Count(logrecord.Expiration) == 1 })
	for _, r := range h.log.All() {
		if r.Type == logrecord.Expiration && !strings.Contains(r.Response.Content, "configured via set_scheduling") {
			t.Fatalf("expiration text %q", r.Response.Content)
		}
	}
}

func TestDelayedMessagesDropTheirBodies(t *testing.T) {
	cfg := config.DefaultQueueConfig()
	cfg.RetryInterval = 2500 * time.Millisecond
	var mu sync.Mutex
	var seen []string
	h := newHarness(t, cfg, func(u string, n int) smtpreply.Response {
		if n == 0 {
			return smtpreply.Response{Code: 451, Content: "later"}
		}
		return smtpreply.Response{Code: 250, Content: "ok"}
	})
	h.conn.script = func(u string, n int) smtpreply.Response {
		if n == 0 {
			return smtpreply.Response{Code: 451, Content: "later"}
		}
		return smtpreply.Response{Code: 250, Content: "ok"}
	}
	var held *message.Message
	h.conn.onSend = func(m *message.Message) {
		mu.Lock()
		seen = append(seen, string(m.Data()))
		mu.Unlock()
	}
	held = h.inject(t, "r")
	waitFor(t, "the transient failure", 2*time.Second, func() bool { return h.log.Count(logrecord.TransientFailure) == 1 })
	waitFor(t, "the body to be dropped", 2*time.Second, func() bool { return h.m.ScheduledCount() == 1 })
	h.m.mu.Lock()
	e := h.m.timers[0]
	kept, id, attempts := e.msg, e.ID(), e.Attempts()
	h.m.mu.Unlock()
	if kept != nil || id != held.ID() || attempts != 1 {
		t.Fatalf("a message waiting %v is kept in memory (%v), or its entry lost its id %s (%s) or attempts %d",
			cfg.RetryInterval, kept != nil, id, held.ID(), attempts)
	}
	waitFor(t, "the retry", 6*time.Second, func() bool { return h.log.Count(logrecord.Delivery) == 1 })
	mu.Lock()
	defer mu.Unlock()
	if h.spool.loads.Load() != 1 || len(seen) != 2 || seen[1] != "Subject: t\r\n\r\nbody\r\n" {
		t.Fatalf("the retry must send the body read back from the spool: loads=%d sends=%q", h.spool.loads.Load(), seen)
	}
}

// injectPolicy adds smtp_server_message_deferred_inject.
type injectPolicy struct {
	*fakePolicy
	inject func(m *message.Message) error
}

func (p *injectPolicy) HasHandler(e string) bool {
	return e == "smtp_server_message_deferred_inject"
}
func (p *injectPolicy) DeferredInject(ctx context.Context, m *message.Message) error {
	return p.inject(m)
}

// TestDeferredInjectQueue: a message in the deferred_queue listener's
// internal queue goes through smtp_server_message_deferred_inject: rebound
// (DeferredInjectionRebind) and delivered from the queue the handler
// chose; bounced on a 5xx rejection; retried a minute later otherwise.
func TestDeferredInjectQueue(t *testing.T) {
	h := newHarness(t, config.DefaultQueueConfig(), ok250)
	calls := map[string]int{}
	var mu sync.Mutex
	ip := &injectPolicy{fakePolicy: h.pol, inject: func(m *message.Message) error {
		mu.Lock()
		defer mu.Unlock()
		u := m.Recipients()[0].User
		calls[u]++
		if q, ok := m.MetaString("queue"); ok {
			t.Errorf("the handler saw the internal queue %q", q)
		}
		switch u {
		case "bounce":
			return &smtpreply.Rejection{Code: 550, Text: "5.7.1 not wanted"}
		case "later":
			return &smtpreply.Rejection{Code: 451, Text: "4.3.0 not now"}
		case "broken":
			return errors.New("lua: attempt to index a nil value")
		case "drop":
			m.SetMeta("queue", "null")
			return nil
		}
		m.SetMeta("queue", "rebound.example")
		return nil
	}}
	h.m.o.Policy = ip
	send := func(user string) *message.Message {
		m := message.New(h.gen, message.Address{User: "s", Domain: "x.com"}, []message.Address{{User: user, Domain: "example.com"}}, []byte("Subject: t\r\n\r\nbody\r\n"))
		m.SetMeta("queue", message.DeferredInjectQueue)
		if err := h.m.Spool(context.Background(), m, false); err != nil {
			t.Fatal(err)
		}
		if err := h.m.Insert(context.Background(), m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	send("ok")
	send("bounce")
	send("later")
	send("broken")
	send("drop")
	waitFor(t, "outcomes", 5*time.Second, func() bool {
		return h.log.Count(logrecord.Delivery) == 1 && h.log.Count(logrecord.Bounce) == 1 && h.log.Count(logrecord.TransientFailure) == 2 &&
			h.log.Count(logrecord.DeferredInjectionRebind) == 2
	})
	var rebind, delivery, bounce logrecord.Record
	var transients []logrecord.Record
	for _, r := range h.log.All() {
		switch r.Type {
		case logrecord.DeferredInjectionRebind:
			if r.Queue == "null" {
				continue // the dropped one
			}
			rebind = r
		case logrecord.Delivery:
			delivery = r
		case logrecord.Bounce:
			bounce = r
		case logrecord.TransientFailure:
			transients = append(transients, r)
		}
	}
	if rebind.Queue != "rebound.example" || delivery.Queue != "rebound.example" || delivery.Recipient[0] != "ok@example.com" {
		t.Fatalf("rebind %+v\ndelivery %+v", rebind, delivery)
	}
	if bounce.Response.Code != 550 || bounce.Response.Content != "not wanted" || bounce.Recipient[0] != "bounce@example.com" {
		t.Fatalf("bounce %+v", bounce)
	}
	for _, r := range transients {
		if r.Queue != message.DeferredInjectQueue || (r.Response.Code != 451 && r.Response.Code != 400) {
			t.Fatalf("transient %+v", r)
		}
	}
	if n := h.m.ScheduledCount(); n != 2 {
		t.Fatalf("%d messages waiting for another try, want 2", n)
	}
	if h.spool.len() != 2 {
		t.Fatalf("spool holds %d messages, want the 2 to retry", h.spool.len())
	}
}
