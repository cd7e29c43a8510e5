package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// countingSink is an SMTP server in the test process that answers
// MAIL FROM with 451 until accept is set, then takes every message and
// counts it by recipient and by the local address it arrived on.
type countingSink struct {
	accept   atomic.Bool
	refused  atomic.Int64 // MAIL commands answered 451
	received atomic.Int64

	mu     sync.Mutex
	byRcpt map[string]int
	byAddr map[string]map[string]int // local address → recipient domain → count

	servers []*smtp.Server
}

type countingSession struct {
	s     *countingSink
	local string
	rcpts []string
}

func (s *countingSink) NewSession(c *smtp.Conn) (smtp.Session, error) {
	local, _, _ := net.SplitHostPort(c.Conn().LocalAddr().String())
	return &countingSession{s: s, local: local}, nil
}

func (ss *countingSession) Mail(from string, _ *smtp.MailOptions) error {
	if !ss.s.accept.Load() {
		ss.s.refused.Add(1)
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "not now"}
	}
	return nil
}

func (ss *countingSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.rcpts = append(ss.rcpts, to)
	return nil
}

func (ss *countingSession) Data(r io.Reader) error {
	if _, err := io.Copy(io.Discard, r); err != nil {
		return err
	}
	ss.s.mu.Lock()
	for _, rc := range ss.rcpts {
		ss.s.byRcpt[rc]++
		_, dom, _ := strings.Cut(rc, "@")
		if ss.s.byAddr[ss.local] == nil {
			ss.s.byAddr[ss.local] = map[string]int{}
		}
		ss.s.byAddr[ss.local][dom]++
	}
	ss.s.mu.Unlock()
	ss.s.received.Add(int64(len(ss.rcpts)))
	ss.rcpts = nil
	return nil
}

func (ss *countingSession) Reset()        { ss.rcpts = nil }
func (ss *countingSession) Logout() error { return nil }

// startCountingSink serves the sink on each listener until the test ends.
func startCountingSink(t *testing.T, lns ...net.Listener) *countingSink {
	t.Helper()
	s := &countingSink{byRcpt: map[string]int{}, byAddr: map[string]map[string]int{}}
	for _, ln := range lns {
		srv := smtp.NewServer(s)
		srv.Domain = "counting.test"
		srv.ReadTimeout = time.Minute
		srv.WriteTimeout = time.Minute
		srv.MaxRecipients = 1000
		srv.AllowInsecureAuth = true
		s.servers = append(s.servers, srv)
		go srv.Serve(ln)
	}
	t.Cleanup(func() {
		for _, srv := range s.servers {
			srv.Close()
		}
	})
	return s
}

// counts returns a copy of the per-recipient counts.
func (s *countingSink) counts() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.byRcpt))
	for k, v := range s.byRcpt {
		out[k] = v
	}
	return out
}

// exactlyOnce checks that every recipient in want arrived once and that
// nothing else arrived; it reports the first few differences.
func exactlyOnce(got map[string]int, want []string) error {
	var bad []string
	seen := make(map[string]bool, len(want))
	for _, r := range want {
		seen[r] = true
		if got[r] != 1 {
			bad = append(bad, fmt.Sprintf("%s×%d", r, got[r]))
		}
	}
	for r, n := range got {
		if !seen[r] {
			bad = append(bad, fmt.Sprintf("unexpected %s×%d", r, n))
		}
	}
	if len(bad) > 0 {
		if len(bad) > 10 {
			bad = append(bad[:10], fmt.Sprintf("... %d in all", len(bad)))
		}
		return fmt.Errorf("not exactly once: %s", strings.Join(bad, ", "))
	}
	return nil
}

// injectBatches posts the recipients to /api/inject/v1 in batches of
// batch (one message per recipient), with a few requests in flight.
func injectBatches(t *testing.T, httpAddr string, rcpts []string, batch int, content string) {
	t.Helper()
	type rcpt struct {
		Email string `json:"email"`
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(rcpts)/batch+1)
	sem := make(chan struct{}, 4)
	for i := 0; i < len(rcpts); i += batch {
		end := min(i+batch, len(rcpts))
		req := map[string]any{
			"envelope_sender": "bulk@sender.example",
			"content":         content,
		}
		var rs []rcpt
		for _, r := range rcpts[i:end] {
			rs = append(rs, rcpt{r})
		}
		req["recipients"] = rs
		body, _ := json.Marshal(req)
		wg.Add(1)
		sem <- struct{}{}
		go func(want int) {
			defer wg.Done()
			defer func() { <-sem }()
			resp, err := http.Post("http://"+httpAddr+"/api/inject/v1", "application/json", bytes.NewReader(body))
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			var r struct {
				SuccessCount int `json:"success_count"`
			}
			if resp.StatusCode != 200 || json.Unmarshal(b, &r) != nil || r.SuccessCount != want {
				errs <- fmt.Errorf("inject: %d %s", resp.StatusCode, b)
			}
		}(end - i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// rssKB reads VmRSS of pid in kB.
func rssKB(t *testing.T, pid int) int {
	t.Helper()
	f := strings.Fields(procStatus(pid, "VmRSS"))
	if len(f) == 0 {
		t.Fatalf("no VmRSS for %d", pid)
	}
	n, err := strconv.Atoi(f[0])
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// scheduledTotal reads scheduled_count_total from the daemon's /metrics.
func scheduledTotal(t *testing.T, httpAddr string) int {
	t.Helper()
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "scheduled_count_total "); ok {
			f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return int(f)
		}
	}
	return -1
}

// waitFor polls cond every 200 ms until it holds or timeout passes.
func waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(200 * time.Millisecond)
	}
	return true
}

// scalePolicy writes a policy that spools (kind) in dir, takes HTTP
// injections from loopback and sends everything to the sink's port on
// 127.0.0.1, retrying every retry. max_ready holds the whole queue, so that
// messages due at once are not pushed back by up to a minute (what
// KumoMTA does when a ready queue is full).
func scalePolicy(t *testing.T, dir, kind, sinkPort, retry string) string {
	t.Helper()
	p := filepath.Join(dir, "scale.lua")
	src := `local kumo = require 'kumo'
kumo.on('init', function()
  kumo.define_spool { name = 'data', path = '` + dir + `/data', kind = '` + kind + `' }
  kumo.define_spool { name = 'meta', path = '` + dir + `/meta', kind = '` + kind + `' }
  kumo.start_esmtp_listener { listen = '127.0.0.1:0', hostname = 'scale.test' }
  kumo.start_http_listener { listen = '127.0.0.1:0', hostname = 'scale.test' }
end)
kumo.on('http_message_generated', function(msg) msg:set_meta('queue', '[127.0.0.1]:` + sinkPort + `') end)
kumo.on('get_queue_config', function()
  return kumo.make_queue_config { retry_interval = '` + retry + `', max_retry_interval = '` + retry + `' }
end)
kumo.on('get_egress_path_config', function()
  return kumo.make_egress_path { enable_tls = 'Disabled', prohibited_hosts = {}, max_ready = 20000 }
end)
`
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func listenLoopback(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// scaleMessages is the number of messages of the deep-queue and restart
// tests: def in CI, or KUMOGO_SCALE_MESSAGES for the large scenario that
// bench/README.md describes (1,000,000). scaleWait stretches a wait in
// proportion.
func scaleMessages(def int) int {
	if v, err := strconv.Atoi(os.Getenv("KUMOGO_SCALE_MESSAGES")); err == nil && v > 0 {
		return v
	}
	return def
}

func scaleWait(d time.Duration, n, def int) time.Duration {
	if n > def {
		return d * time.Duration(n/def+1)
	}
	return d
}

// scaleBody is a message of about 4 KB, the size the deep-queue scenario
// of bench/ uses.
var scaleBody = "From: bulk@sender.example\r\nSubject: scale\r\n\r\n" + strings.Repeat(strings.Repeat("q", 76)+"\r\n", 52)

// heapInuse reads HeapInuse (bytes) from the daemon's pprof heap page.
func heapInuse(t *testing.T, pprofAddr string) int {
	t.Helper()
	resp, err := http.Get("http://" + pprofAddr + "/debug/pprof/heap?debug=1&gc=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`# HeapInuse = (\d+)`).FindSubmatch(b)
	if m == nil {
		return -1
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// TestScaleDeepQueue: 5,000 messages of 4 KB wait on a destination that
// answers 451; the daemon's RSS grows by less than the bodies would take
// (they stay in the spool), /metrics counts them all as scheduled, and
// once the destination recovers each is delivered exactly once.
func TestScaleDeepQueue(t *testing.T) {
	n := scaleMessages(5000)
	ln := listenLoopback(t)
	sink := startCountingSink(t, ln)
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	dir := t.TempDir()
	pprofAddr := freeLoopbackAddr(t)
	d := startDaemon(t, nil, "--policy", scalePolicy(t, dir, "RocksDB", port, "10s"), "--pprof", pprofAddr)
	httpAddr := regexp.MustCompile(`http listener on (\S+)`).FindStringSubmatch(d.log())[1]
	pid := d.cmd.Process.Pid
	base, baseHeap := rssKB(t, pid), heapInuse(t, pprofAddr)

	rcpts := make([]string, n)
	for i := range rcpts {
		rcpts[i] = fmt.Sprintf("r%05d@deep.example", i)
	}
	start := time.Now()
	injectBatches(t, httpAddr, rcpts, 500, scaleBody)
	t.Logf("injected %d in %v", n, time.Since(start))
	if !waitFor(scaleWait(60*time.Second, n, 5000), func() bool { return sink.refused.Load() >= int64(n) }) {
		t.Fatalf("only %d of %d first attempts were answered 451\n%s", sink.refused.Load(), n, tail(d.log(), 20))
	}
	// every message is back in its scheduled queue, waiting for its retry
	if !waitFor(scaleWait(10*time.Second, n, 5000), func() bool { return scheduledTotal(t, httpAddr) == n }) {
		t.Fatalf("scheduled_count_total %d, want %d", scheduledTotal(t, httpAddr), n)
	}
	queued, heap := rssKB(t, pid), heapInuse(t, pprofAddr)
	perMsg := float64(queued-base) * 1024 / float64(n)
	t.Logf("RSS %d kB at start, %d kB with %d waiting: %.0f bytes per waiting message; HeapInuse %d → %d: %.0f bytes per message",
		base, queued, n, perMsg, baseHeap, heap, float64(heap-baseHeap)/float64(n))
	// Waiting messages are held compactly (queue/compact.go): their
	// metadata and bodies stay in the spool. Measured on 2026-12-03 (2
	// shared cores, 5,000 messages): 541 bytes of live heap per waiting
	// message after a GC, fixed costs included (2.3 KB before, when the
	// metadata maps stayed in memory), and about 6 KB of RSS (the HTTP
	// injection's garbage is not yet returned to the kernel at this size;
	// bench/deepqueue.sh measures RSS at a million). The heap bound catches
	// metadata or bodies kept in memory again.
	if perHeap := float64(heap-baseHeap) / float64(n); perHeap > 1536 {
		t.Errorf("live heap grew by %.0f bytes per waiting message (%d → %d)", perHeap, baseHeap, heap)
	}
	if perMsg > 16*1024 {
		t.Errorf("RSS grew by %.0f bytes per waiting message (base %d kB, now %d kB)", perMsg, base, queued)
	}
	if got := sink.received.Load(); got != 0 {
		t.Fatalf("%d delivered while the destination refused", got)
	}

	sink.accept.Store(true)
	if !waitFor(scaleWait(90*time.Second, n, 5000), func() bool { return sink.received.Load() >= int64(n) }) {
		t.Fatalf("delivered %d of %d after recovery\n%s", sink.received.Load(), n, tail(d.log(), 20))
	}
	if !waitFor(10*time.Second, func() bool { return scheduledTotal(t, httpAddr) == 0 }) {
		t.Errorf("scheduled_count_total %d after delivery", scheduledTotal(t, httpAddr))
	}
	time.Sleep(time.Second) // a duplicate would arrive now
	if err := exactlyOnce(sink.counts(), rcpts); err != nil {
		t.Fatal(err)
	}
	d.stop(t, syscall.SIGTERM)
}
