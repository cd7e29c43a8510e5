package main

import (
	"fmt"
	"io"
	"maps"
	"net"
	"net/smtp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/kumogo/kumogo/internal/logrecord"
)

// countSink is an SMTP server on 127.0.0.1 that notes, for every message,
// when it arrived, its recipient domain, the connection it came on, the
// client's address and EHLO name; and, per EHLO name, how many sessions
// were open at once. Sessions whose EHLO name is in slow wait that long
// in DATA, so that concurrent connections pile up.
type countSink struct {
	addr string
	slow map[string]time.Duration

	mu        sync.Mutex
	recs      []sinkRec
	conns     int
	active    map[string]int
	maxActive map[string]int
}

type sinkRec struct {
	at     time.Time
	rcpt   string
	domain string
	conn   int
	peerIP string
	ehlo   string
}

func startCountSink(t *testing.T, slow map[string]time.Duration) *countSink {
	t.Helper()
	cs := &countSink{slow: slow, active: map[string]int{}, maxActive: map[string]int{}}
	srv := gosmtp.NewServer(cs)
	srv.Domain = "count.test"
	srv.ReadTimeout = 30 * time.Second
	srv.WriteTimeout = 30 * time.Second
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cs.addr = l.Addr().String()
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return cs
}

func (cs *countSink) NewSession(c *gosmtp.Conn) (gosmtp.Session, error) {
	cs.mu.Lock()
	cs.conns++
	id := cs.conns
	cs.mu.Unlock()
	return &countSession{sink: cs, conn: c, id: id}, nil
}

// byDomain returns the records of messages to domain.
func (cs *countSink) byDomain(domain string) []sinkRec {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	var out []sinkRec
	for _, r := range cs.recs {
		if r.domain == domain {
			out = append(out, r)
		}
	}
	return out
}

func (cs *countSink) maxOpen(ehlo string) int {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return cs.maxActive[ehlo]
}

type countSession struct {
	sink    *countSink
	conn    *gosmtp.Conn
	id      int
	counted string // EHLO name this session is counted under
	rcpt    string
	domain  string
}

func (s *countSession) Reset() { s.domain = "" }
func (s *countSession) Logout() error {
	if s.counted != "" {
		s.sink.mu.Lock()
		s.sink.active[s.counted]--
		s.sink.mu.Unlock()
	}
	return nil
}
func (s *countSession) Mail(string, *gosmtp.MailOptions) error {
	if s.counted == "" {
		s.counted = s.conn.Hostname()
		s.sink.mu.Lock()
		s.sink.active[s.counted]++
		s.sink.maxActive[s.counted] = max(s.sink.maxActive[s.counted], s.sink.active[s.counted])
		s.sink.mu.Unlock()
	}
	return nil
}
func (s *countSession) Rcpt(to string, _ *gosmtp.RcptOptions) error {
	s.rcpt = to
	_, s.domain, _ = strings.Cut(to, "@")
	return nil
}
func (s *countSession) Data(r io.Reader) error {
	if _, err := io.Copy(io.Discard, r); err != nil {
		return err
	}
	if d := s.sink.slow[s.counted]; d > 0 {
		time.Sleep(d)
	}
	host, _, _ := net.SplitHostPort(s.conn.Conn().RemoteAddr().String())
	s.sink.mu.Lock()
	s.sink.recs = append(s.sink.recs, sinkRec{at: time.Now(), rcpt: s.rcpt, domain: s.domain, conn: s.id, peerIP: host, ehlo: s.counted})
	s.sink.mu.Unlock()
	return nil
}

// sendBatch sends one message with n recipients at domain (n messages
// once the listener splits them).
func sendBatch(t *testing.T, addr, domain string, n int) {
	t.Helper()
	var rcpts []string
	for i := range n {
		rcpts = append(rcpts, fmt.Sprintf("r%d@%s", i, domain))
	}
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.Mail("sender@example.com")
	for _, r := range rcpts {
		if err == nil {
			err = c.Rcpt(r)
		}
	}
	var w io.WriteCloser
	if err == nil {
		w, err = c.Data()
	}
	if err == nil {
		_, err = io.WriteString(w, "Subject: shaping\r\n\r\nhello\r\n")
	}
	if err == nil {
		err = w.Close()
	}
	if err == nil {
		err = c.Quit()
	}
	if err != nil {
		t.Fatalf("sending to %s: %v", domain, err)
	}
}

// rateOf is the steady rate of recs: (n-1) intervals over the time from
// the first to the last.
func rateOf(recs []sinkRec) float64 {
	if len(recs) < 2 {
		return 0
	}
	ts := make([]time.Time, len(recs))
	for i, r := range recs {
		ts[i] = r.at
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
	return float64(len(ts)-1) / ts[len(ts)-1].Sub(ts[0]).Seconds()
}

func waitCount(t *testing.T, cs *countSink, domain string, n int, within time.Duration) []sinkRec {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		recs := cs.byDomain(domain)
		if len(recs) >= n {
			return recs
		}
		if time.Now().After(deadline) {
			t.Errorf("%s: %d of %d messages arrived within %v", domain, len(recs), n, within)
			return recs
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func within10(t *testing.T, what string, got, want float64) {
	t.Helper()
	if got < want*0.9 || got > want*1.1 {
		t.Errorf("%s: %.2f/s, want %.0f/s ± 10 %%", what, got, want)
	} else {
		t.Logf("%s: %.2f/s (configured %.0f/s)", what, got, want)
	}
}

// shapingPolicy routes every domain to the sink through its own pool and
// shapes each domain's egress path as the test needs.
func shapingPolicy(t *testing.T, dir, sink string, init string) string {
	return spooledPolicy(t, dir, `
  kumo.configure_local_logs { log_dir = '`+dir+`/logs', max_segment_duration = '1s' }
  kumo.start_esmtp_listener { listen = '127.0.0.1:0', hostname = 'relay.test', relay_hosts = { '127.0.0.1' } }
`+init, `
local SINK = '`+sink+`'
-- domain → { pool entries, queue options, path options }
local D = {
  ['rate.test'] = { path = { max_message_rate = '10/s,max_burst=1' } },
  ['add1.test'] = { src = { { name = 'src-a1', weight = 1 } }, path = { additional_message_rate_throttles = { ['shared-rate'] = '10/s,max_burst=1' } } },
  ['add2.test'] = { src = { { name = 'src-a2', weight = 1 } }, path = { additional_message_rate_throttles = { ['shared-rate'] = '10/s,max_burst=1' } } },
  ['qrate.test'] = { queue = { max_message_rate = '10/s,max_burst=1' } },
  ['mt.test'] = {},
  ['crate.test'] = { path = { max_connection_rate = '5/s,max_burst=1', max_deliveries_per_connection = 1 } },
  ['conns1.test'] = { src = { { name = 'src-c1', weight = 1 } }, path = { connection_limit = 10, additional_connection_limits = { ['two-conns'] = 2 }, ehlo_domain = 'conns.test' } },
  ['conns2.test'] = { src = { { name = 'src-c2', weight = 1 } }, path = { connection_limit = 10, additional_connection_limits = { ['two-conns'] = 2 }, ehlo_domain = 'conns.test' } },
  ['limit.test'] = { path = { connection_limit = 'local:3', ehlo_domain = 'limit.test' } },
  ['mdpc.test'] = { path = { connection_limit = 1, max_deliveries_per_connection = 4, ehlo_domain = 'mdpc.test' } },
  ['sel.test'] = { path = { source_selection_rate = '2/day' } },
  ['asel.test'] = { src = { { name = 'src-s1', weight = 1 } }, path = { additional_source_selection_rates = { ['src-s1-overall'] = '3/day' } } },
  ['weights.test'] = { src = { { name = 'two', weight = 3 }, { name = 'three', weight = 1 } } },
  -- its own source: the ready queue (and so the path) is per source and site
  ['cluster-rate.test'] = { path = { max_message_rate = '10/s,max_burst=1' } },
  ['outage.test'] = { path = { max_message_rate = '40/s,max_burst=1' } },
  -- shared leases last the sum of the path's timeouts (17 s here)
  ['hold.test'] = { path = { connection_limit = 10, additional_connection_limits = { ['cluster-conns'] = 2 }, ehlo_domain = 'hold.test', connect_timeout = '1s', banner_timeout = '1s', ehlo_timeout = '1s', auth_timeout = '1s', mail_from_timeout = '1s', rcpt_to_timeout = '1s', data_timeout = '1s', data_dot_timeout = '8s', starttls_timeout = '1s', idle_timeout = '1s' } },
  ['hold2.test'] = { path = { connection_limit = 10, additional_connection_limits = { ['cluster-conns'] = 2 }, ehlo_domain = 'hold2.test' } },
  ['ehlo.test'] = { src = { { name = 'two-b', weight = 1 } }, path = { ehlo_domain = 'path-wins.test' } },
}
local SOURCES = {
  ['two'] = { source_address = '127.0.0.2', ehlo_domain = 'two.test' },
  ['three'] = { source_address = '127.0.0.3', ehlo_domain = 'three.test' },
  ['two-b'] = { source_address = '127.0.0.2', ehlo_domain = 'two.test' },
}
kumo.on('smtp_server_message_received', function(msg)
  msg:set_meta('queue', msg:recipient().domain)
end)
kumo.on('get_queue_config', function(domain)
  local d = D[domain] or {}
  local q = { protocol = { smtp = { mx_list = { SINK } } }, retry_interval = '1 hour' }
  -- a pool per domain: the ready queue is per (source, site), and every
  -- domain here has the same site (the sink)
  q.egress_pool = 'pool-' .. domain
  for k, v in pairs(d.queue or {}) do q[k] = v end
  return kumo.make_queue_config(q)
end)
kumo.on('get_egress_pool', function(name)
  local domain = name:sub(6)
  return kumo.make_egress_pool { name = name, entries = D[domain].src or { { name = 'src-' .. domain, weight = 1 } } }
end)
kumo.on('get_egress_source', function(name)
  local s = { name = name }
  for k, v in pairs(SOURCES[name] or {}) do s[k] = v end
  return kumo.make_egress_source(s)
end)
kumo.on('get_egress_path_config', function(domain, source, site)
  local p = { enable_tls = 'Disabled', prohibited_hosts = {} }
  for k, v in pairs((D[domain] or {}).path or {}) do p[k] = v end
  return kumo.make_egress_path(p)
end)
kumo.on('throttle_insert_ready_queue', function(msg)
  if msg:recipient().domain == 'mt.test' then
    kumo.make_throttle('mt-rate', '10/s,max_burst=1'):delay_message_if_throttled(msg)
  end
end)
`)
}

// TestEgressShapingLimits runs one relay whose domains each exercise one
// limit, against a counting sink: message rates (the path's
// max_message_rate, additional_message_rate_throttles shared by two
// egress paths, the scheduled queue's max_message_rate, and a
// kumo.make_throttle in throttle_insert_ready_queue) within 10 % of the
// configured rate; connection_limit and additional_connection_limits
// never exceeded and reached; max_deliveries_per_connection; and
// source_selection_rate / additional_source_selection_rates letting only
// their allowance through, the rest failing transiently with KumoMTA's
// text.
func TestEgressShapingLimits(t *testing.T) {
	sink := startCountSink(t, map[string]time.Duration{"conns.test": 30 * time.Millisecond, "limit.test": 150 * time.Millisecond})
	dir := t.TempDir()
	d := startDaemon(t, nil, "--policy", shapingPolicy(t, dir, sink.addr, ""))
	const n = 30
	for _, dom := range []string{"rate.test", "add1.test", "add2.test", "qrate.test", "mt.test", "conns1.test", "conns2.test"} {
		sendBatch(t, d.addr, dom, n)
	}
	// KumoMTA's dispatcher count reaches a limit of 3 from 48 ready
	// messages: 150 ms per message at the sink lets them pile up
	sendBatch(t, d.addr, "limit.test", 100)
	sendBatch(t, d.addr, "crate.test", 20)
	sendBatch(t, d.addr, "mdpc.test", 10)
	sendBatch(t, d.addr, "sel.test", 10)
	sendBatch(t, d.addr, "asel.test", 10)

	// 30 messages at 10/s with no burst take 2.9 s; sharing one rate,
	// add1 and add2 take twice that
	within10(t, "max_message_rate", rateOf(waitCount(t, sink, "rate.test", n, 15*time.Second)), 10)
	add := append(waitCount(t, sink, "add1.test", n, 15*time.Second), waitCount(t, sink, "add2.test", n, 15*time.Second)...)
	within10(t, "additional_message_rate_throttles over two paths", rateOf(add), 10)
	within10(t, "queue max_message_rate", rateOf(waitCount(t, sink, "qrate.test", n, 15*time.Second)), 10)
	within10(t, "make_throttle delay_message_if_throttled", rateOf(waitCount(t, sink, "mt.test", n, 15*time.Second)), 10)

	// one message per connection: 20 connections at 5/s take 3.8 s
	crate := waitCount(t, sink, "crate.test", 20, 15*time.Second)
	conns := map[int]bool{}
	for _, r := range crate {
		conns[r.conn] = true
	}
	if len(conns) != 20 {
		t.Errorf("max_deliveries_per_connection=1: 20 messages on %d connections", len(conns))
	}
	within10(t, "max_connection_rate", rateOf(crate), 5)

	waitCount(t, sink, "conns1.test", n, 15*time.Second)
	waitCount(t, sink, "conns2.test", n, 15*time.Second)
	if got := sink.maxOpen("conns.test"); got != 2 {
		t.Errorf("additional_connection_limits two-conns=2 over two paths: %d connections at once", got)
	}
	waitCount(t, sink, "limit.test", 100, 15*time.Second)
	if got := sink.maxOpen("limit.test"); got != 3 {
		t.Errorf("connection_limit local:3: %d connections at once", got)
	}

	perConn := map[int]int{}
	for _, r := range waitCount(t, sink, "mdpc.test", 10, 15*time.Second) {
		perConn[r.conn]++
	}
	if len(perConn) != 3 || perConn[slices3(perConn)[0]] != 4 {
		t.Errorf("max_deliveries_per_connection=4, 10 messages: per connection %v", perConn)
	}

	waitCount(t, sink, "sel.test", 2, 10*time.Second)
	waitCount(t, sink, "asel.test", 3, 10*time.Second)
	time.Sleep(500 * time.Millisecond)
	if got := len(sink.byDomain("sel.test")); got != 2 {
		t.Errorf("source_selection_rate 2/day let %d of 10 through", got)
	}
	if got := len(sink.byDomain("asel.test")); got != 3 {
		t.Errorf("additional_source_selection_rates 3/day let %d of 10 through", got)
	}
	d.stop(t, syscall.SIGTERM)
	recs, err := logrecord.ReadDir(dir + "/logs")
	if err != nil {
		t.Fatal(err)
	}
	want := "KumoMTA internal: no sources for sel.test pool=`pool-sel.test` are eligible for selection at this time"
	tf := 0
	for _, r := range recs {
		if r.Type.String() != "TransientFailure" {
			continue
		}
		if r.Response.Content == want {
			tf++
		} else if !strings.HasPrefix(r.Response.Content, "KumoMTA internal: no sources for asel.test") {
			t.Errorf("unexpected TransientFailure to %v: %s", r.Recipient, r.Response.Content)
		}
	}
	if tf != 8 {
		t.Errorf("%d TransientFailure records %q, want 8", tf, want)
	}
}

// slices3 returns the connection ids of perConn in order.
func slices3(perConn map[int]int) []int {
	var ids []int
	for id := range perConn {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	return ids
}

// TestEgressSourcesBindAndWeights: an egress source's source_address is
// the address the sink sees (127.0.0.2 and 127.0.0.3, loopback aliases
// on Linux), its ehlo_domain is the EHLO name unless the egress path
// names one, and a pool's weights split the messages in proportion.
func TestEgressSourcesBindAndWeights(t *testing.T) {
	sink := startCountSink(t, nil)
	dir := t.TempDir()
	d := startDaemon(t, nil, "--policy", shapingPolicy(t, dir, sink.addr, ""))
	sendBatch(t, d.addr, "weights.test", 40)
	sendBatch(t, d.addr, "ehlo.test", 5)
	by := map[string]int{}
	for _, r := range waitCount(t, sink, "weights.test", 40, 15*time.Second) {
		by[r.peerIP+" "+r.ehlo]++
	}
	if want := map[string]int{"127.0.0.2 two.test": 30, "127.0.0.3 three.test": 10}; !maps.Equal(by, want) {
		t.Errorf("pool two:3, three:1 over 40 messages: %v, want %v", by, want)
	}
	for _, r := range waitCount(t, sink, "ehlo.test", 5, 15*time.Second) {
		if r.peerIP != "127.0.0.2" || r.ehlo != "path-wins.test" {
			t.Errorf("source two with the path's ehlo_domain: from %s as %s", r.peerIP, r.ehlo)
		}
	}
	d.stop(t, syscall.SIGTERM)
}
