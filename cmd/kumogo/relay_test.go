package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kumogo/kumogo/internal/logrecord"
	"github.com/kumogo/kumogo/internal/testutil"
	"github.com/kumogo/kumogo/queue/egress/mx/mxtest"
)

func relayEnv(t *testing.T, sinkAddr, dir string) []string {
	return []string{
		"KUMOGO_RELAY_LISTEN=127.0.0.1:0",
		"KUMOGO_SINK_HOST=" + sinkAddr,
		"KUMOGO_RELAY_DIR=" + dir,
		"KUMOGO_RELAY_HOSTNAME=relay.test",
	}
}

// awaitRecipients waits up to timeout for every recipient in want to
// have arrived at the sink whose logs are in logDir, and returns those
// that did not.
func awaitRecipients(t *testing.T, logDir string, want []string, timeout time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := sinkRecipients(t, logDir)
		var missing []string
		for _, r := range want {
			if got[r] == 0 {
				missing = append(missing, r)
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			return missing
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// sinkRecipients returns how often each recipient arrived at the sink.
func sinkRecipients(t *testing.T, logDir string) map[string]int {
	got := map[string]int{}
	if _, err := os.Stat(logDir); os.IsNotExist(err) {
		return got // nothing logged yet
	}
	recs, err := logrecord.ReadDir(logDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.Type == logrecord.Reception {
			for _, rc := range r.Recipient {
				got[rc]++
			}
		}
	}
	return got
}

func TestRelayToSinkWithSmtpSource(t *testing.T) {
	src, err := exec.LookPath("smtp-source")
	if err != nil {
		t.Fatalf("smtp-source is required (scripts/install-test-deps.sh installs postfix): %v", err)
	}
	senv, sinkLogs := sinkEnv(t)
	sink := startDaemon(t, senv, "--policy", "sink.lua")
	relayDir := t.TempDir()
	relay := startDaemon(t, relayEnv(t, sink.addr, relayDir), "--policy", "route-to-sink.lua")
	const n = 300
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, src, "-c", "-m", fmt.Sprint(n), "-s", "10", "-l", "10240",
		"-f", "from@example.com", "-t", "to@example.net", relay.addr).CombinedOutput()
	if err != nil {
		t.Fatalf("smtp-source: %v\n%s", err, out)
	}
	deadline := time.Now().Add(30 * time.Second)
	for sinkRecipients(t, sinkLogs)["to@example.net"] < n && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	if got := sinkRecipients(t, sinkLogs)["to@example.net"]; got != n {
		t.Fatalf("sink received %d of %d\n%s", got, n, tail(relay.log(), 20))
	}
	relay.stop(t, syscall.SIGINT)
	sink.stop(t, syscall.SIGINT)
	recs, err := logrecord.ReadDir(filepath.Join(relayDir, "logs"))
	if err != nil {
		t.Fatal(err)
	}
	c := countTypes(recs)
	if c["Reception"] != n || c["Delivery"] != n || len(c) != 2 {
		t.Fatalf("relay records %v", c)
	}
	for _, r := range recs {
		if r.Type == logrecord.Delivery {
			if r.Site != "unspecified->"+strings.Split(sink.addr, ":")[0]+"@smtp_client" && !strings.HasPrefix(r.Site, "unspecified->") {
				t.Fatalf("site %q", r.Site)
			}
			if r.Response.Code != 250 || r.PeerAddress == nil || r.PeerAddress.Addr != sink.addr || r.NumAttempts != 0 {
				t.Fatalf("delivery record %+v", r)
			}
		}
	}
}

// TestRelayCrashLosesNothing kills the relay with SIGKILL under load, for
// both spool kinds, and proves every acknowledged message is delivered
// after a restart.
func TestRelayCrashLosesNothing(t *testing.T) {
	for _, kind := range []string{"RocksDB", "LocalDisk"} {
		t.Run(kind, func(t *testing.T) { testRelayCrash(t, kind) })
	}
}

// loadUntilKilled sends from 8 connections (at most 2,000 messages each)
// until at least n are acknowledged or 20 s have passed, then kills the
// relay with SIGKILL and returns the recipients of the acknowledged
// messages.
func loadUntilKilled(t *testing.T, relay *daemonProc, n int) []string {
	t.Helper()
	var mu sync.Mutex
	var acked []string
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			lc, err := dialLoad(relay.addr)
			if err != nil {
				return
			}
			defer lc.c.Close()
			body := benchBody(20 * 1024)
			for i := 0; i < 2000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				rcpt := fmt.Sprintf("w%d-m%d@example.com", w, i)
				if err := lc.sendTo(rcpt, body); err != nil {
					return
				}
				mu.Lock()
				acked = append(acked, rcpt)
				mu.Unlock()
			}
		}(w)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		got := len(acked)
		mu.Unlock()
		if got >= n || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	relay.cmd.Process.Signal(syscall.SIGKILL)
	<-relay.done
	close(stop)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	return append([]string(nil), acked...)
}

func testRelayCrash(t *testing.T, kind string) {
	// The sink is down while the relay takes mail, so every acknowledged
	// message exists only in the relay's spool when it is killed.
	sinkAddr := freeLoopbackAddr(t)
	relayDir := t.TempDir()
	env := append(relayEnv(t, sinkAddr, relayDir), "KUMOGO_RELAY_SPOOL="+kind)
	relay := startDaemon(t, env, "--policy", "route-to-sink.lua")
	want := loadUntilKilled(t, relay, 400)
	if len(want) < 100 {
		t.Fatalf("only %d messages acknowledged before the kill", len(want))
	}
	senv, sinkLogs := sinkEnv(t)
	senv = append(senv, "KUMOGO_SINK_LISTEN="+sinkAddr) // the later entry wins
	sink := startDaemon(t, senv, "--policy", "sink.lua")
	// restart on the same spool
	relay2 := startDaemon(t, env, "--policy", "route-to-sink.lua")
	if m := regexp.MustCompile(`spool enumerated .*messages=(\d+)`).FindStringSubmatch(relay2.log()); m == nil {
		t.Fatalf("the restarted relay did not report its spool enumeration:\n%s", relay2.log())
	} else if n, _ := strconv.Atoi(m[1]); n < len(want) {
		t.Fatalf("enumerated %d messages, but %d were acknowledged", n, len(want))
	}
	if missing := awaitRecipients(t, sinkLogs, want, 60*time.Second); len(missing) > 0 {
		t.Fatalf("%d of %d acknowledged messages never reached the sink, e.g. %v\n%s", len(missing), len(want), missing[:min(5, len(missing))], tail(relay2.log(), 20))
	}
	t.Logf("%d acknowledged messages before SIGKILL; all reached the sink after the restart", len(want))
	relay2.stop(t, syscall.SIGINT)
	sink.stop(t, syscall.SIGINT)
}

// TestRelayCrashKeepsRecords kills the relay with SIGKILL while it takes
// and delivers mail (the sink is up), for both spool kinds: every
// acknowledged message has its Reception record in what the killed relay
// left, and once the restarted relay has drained its spool every message
// the sink received has its Delivery record. The segment the kill cut
// short is read up to its last whole record.
func TestRelayCrashKeepsRecords(t *testing.T) {
	for _, kind := range []string{"RocksDB", "LocalDisk"} {
		t.Run(kind, func(t *testing.T) { testRelayCrashRecords(t, kind) })
	}
}

func testRelayCrashRecords(t *testing.T, kind string) {
	senv, sinkLogs := sinkEnv(t)
	sink := startDaemon(t, senv, "--policy", "sink.lua")
	relayDir := t.TempDir()
	logDir := filepath.Join(relayDir, "logs")
	env := append(relayEnv(t, sink.addr, relayDir), "KUMOGO_RELAY_SPOOL="+kind)
	relay := startDaemon(t, env, "--policy", "route-to-sink.lua")
	acked := loadUntilKilled(t, relay, 600)
	if len(acked) < 100 {
		t.Fatalf("only %d messages acknowledged before the kill", len(acked))
	}
	byType := func(recs []logrecord.Record, typ logrecord.Type) map[string]int {
		out := map[string]int{}
		for _, r := range recs {
			if r.Type == typ {
				for _, rc := range r.Recipient {
					out[rc]++
				}
			}
		}
		return out
	}
	// what the killed relay left: its last segment is still writable and
	// may end in a cut frame
	left, err := logrecord.ReadDir(logDir)
	if err != nil {
		t.Fatalf("reading the killed relay's records: %v", err)
	}
	recv := byType(left, logrecord.Reception)
	var noRecord []string
	for _, r := range acked {
		if recv[r] == 0 {
			noRecord = append(noRecord, r)
		}
	}
	if len(noRecord) > 0 {
		t.Fatalf("%d of %d acknowledged messages have no Reception record, e.g. %v", len(noRecord), len(acked), noRecord[:min(5, len(noRecord))])
	}
	delivered := byType(left, logrecord.Delivery)
	t.Logf("%d acknowledged, %d Delivery records before SIGKILL", len(acked), len(delivered))

	// restart: the leftover segment is sealed; what is still spooled goes
	// out. Messages the sink got before the kill whose Delivery record the
	// kill cut short are still spooled and go out again: wait for the
	// spool to drain (message_count 0), not only for the recipients,
	// since a restored message is read from the spool when it is due.
	relay2 := startDaemon(t, append(env, "KUMOGO_RELAY_HTTP=127.0.0.1:0"), "--policy", "route-to-sink.lua")
	if missing := awaitRecipients(t, sinkLogs, acked, 60*time.Second); len(missing) > 0 {
		t.Fatalf("%d acknowledged messages never reached the sink, e.g. %v\n%s", len(missing), missing[:min(5, len(missing))], tail(relay2.log(), 20))
	}
	httpAddr := relay2.httpAddr(t, "http")
	if !waitFor(60*time.Second, func() bool {
		v, _ := metricValues(t, httpAddr)
		n, ok := v["message_count"]
		return ok && n == 0
	}) {
		t.Fatalf("the restarted relay did not drain its spool\n%s", tail(relay2.log(), 20))
	}
	relay2.stop(t, syscall.SIGINT)
	sink.stop(t, syscall.SIGINT)
	all, err := logrecord.ReadDir(logDir)
	if err != nil {
		t.Fatalf("reading the relay's records after the restart (the cut segment is sealed now): %v", err)
	}
	delivered = byType(all, logrecord.Delivery)
	var noDelivery []string
	for r := range sinkRecipients(t, sinkLogs) {
		if delivered[r] == 0 {
			noDelivery = append(noDelivery, r)
		}
	}
	if len(noDelivery) > 0 {
		t.Fatalf("%d messages reached the sink without a Delivery record at the relay, e.g. %v", len(noDelivery), noDelivery[:min(5, len(noDelivery))])
	}
}

func TestSpoolFloorRefusesSessions(t *testing.T) {
	dir := t.TempDir()
	policy := filepath.Join(dir, "floor.lua")
	os.WriteFile(policy, []byte(`local kumo = require 'kumo'
kumo.on('init', function()
  -- a floor no disk can satisfy: the spool is "too full" from the start
  kumo.define_spool { name = 'data', path = '`+dir+`/data', min_free_space = '100%' }
  kumo.define_spool { name = 'meta', path = '`+dir+`/meta' }
  kumo.start_esmtp_listener { listen = '127.0.0.1:0', hostname = 'full.test' }
  kumo.start_http_listener { listen = '127.0.0.1:0' }
end)
kumo.on('smtp_server_message_received', function(msg) msg:set_meta('queue', 'example.com') end)
`), 0o644)
	d := startDaemon(t, nil, "--policy", policy)
	c := testutil.Dial(t, d.addr)
	c.Expect(t, "421 4.3.2 full.test disk is too full. Try later")
	if code, body := d.liveness(t); code != 503 || body != "storage is too full" {
		t.Fatalf("liveness below the floor: %d %q", code, body)
	}
	d.stop(t, syscall.SIGINT)
}

// TestRelayToPostfixSmtpSink relays through kumogo to postfix's smtp-sink
// (a peer without CHUNKING, so bodies go out with DATA) and counts the
// transactions smtp-sink dumped to disk.
func TestRelayToPostfixSmtpSink(t *testing.T) {
	sinkBin, err := exec.LookPath("smtp-sink")
	if err != nil {
		t.Fatalf("smtp-sink is required (scripts/install-test-deps.sh installs postfix): %v", err)
	}
	sinkAddr := freeLoopbackAddr(t)
	dump, err := os.MkdirTemp("", "kumogo-smtp-sink")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dump)
	os.Chmod(dump, 0o777)
	args := []string{"-d", dump + "/%H%M%S.", sinkAddr, "100"}
	if os.Geteuid() == 0 {
		args = append([]string{"-u", "nobody"}, args...)
	}
	ss := exec.Command(sinkBin, args...)
	if err := ss.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { ss.Process.Kill(); ss.Wait() }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if c, err := net.Dial("tcp", sinkAddr); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("smtp-sink did not start")
		}
		time.Sleep(20 * time.Millisecond)
	}
	relay := startDaemon(t, relayEnv(t, sinkAddr, t.TempDir()), "--policy", "route-to-sink.lua")
	const n = 100
	for i := 0; i < n; i++ {
		c := testutil.Dial(t, relay.addr)
		c.Expect(t, "220 ")
		c.Cmd(t, "EHLO t.example", "250-")
		c.Cmd(t, "MAIL FROM:<a@x.com>", "250")
		c.Cmd(t, fmt.Sprintf("RCPT TO:<r%d@example.com>", i), "250")
		c.Cmd(t, "DATA", "354")
		c.SendRaw(fmt.Sprintf("Subject: %d\r\n\r\n..leading dot\r\nbody\r\n.\r\n", i)) // a stuffed ".leading dot"
		c.Expect(t, "250 OK ids=")
		c.Close()
	}
	deadline = time.Now().Add(30 * time.Second)
	count := func() int { e, _ := os.ReadDir(dump); return len(e) }
	for count() < n && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if got := count(); got != n {
		t.Fatalf("smtp-sink received %d of %d\n%s", got, n, tail(relay.log(), 20))
	}
	// a dumped transaction keeps the dot-stuffed line intact
	e, _ := os.ReadDir(dump)
	b, _ := os.ReadFile(filepath.Join(dump, e[0].Name()))
	if !strings.Contains(string(b), "\n.leading dot") || !strings.Contains(string(b), "X-KumoRef: ") {
		t.Fatalf("dumped message:\n%s", b)
	}
	relay.stop(t, syscall.SIGINT)
}

// TestRelayByMXWithFakeDNS routes by MX through a fake DNS server on
// 127.0.0.1 (configured with kumo.dns.configure_resolver): the preferred MX
// has no address, the second one points at the sink; a null-MX domain
// bounces and an NXDOMAIN domain is retried.
func TestRelayByMXWithFakeDNS(t *testing.T) {
	senv, sinkLogs := sinkEnv(t)
	sink := startDaemon(t, senv, "--policy", "sink.lua")
	_, sinkPort, _ := net.SplitHostPort(sink.addr)
	dns := mxtest.Start(t,
		"dest.example. 300 IN MX 5 broken.dest.example.",
		"dest.example. 300 IN MX 10 mx.dest.example.",
		"broken.dest.example. 300 IN TXT \"no address here\"",
		"mx.dest.example. 300 IN A 127.0.0.1",
		"nullmx.example. 300 IN MX 0 .",
	)
	dir := t.TempDir()
	policy := filepath.Join(dir, "mx.lua")
	os.WriteFile(policy, []byte(`local kumo = require 'kumo'
kumo.on('init', function()
  kumo.dns.configure_resolver { name_servers = { '`+dns.Addr+`' } }
  kumo.define_spool { name = 'data', path = '`+dir+`/data' }
  kumo.define_spool { name = 'meta', path = '`+dir+`/meta' }
  kumo.configure_local_logs { log_dir = '`+dir+`/logs', max_segment_duration = '1s' }
  kumo.start_esmtp_listener { listen = '127.0.0.1:0', hostname = 'mx-relay.test' }
  local mx = kumo.dns.lookup_mx('dest.example')
  kumo.log_info('lookup_mx', mx.site_name, mx.hosts[1], mx.hosts[2], kumo.dns.lookup_addr('mx.dest.example')[1])
end)
kumo.on('get_queue_config', function(domain)
  return kumo.make_queue_config { retry_interval = '1h' }
end)
kumo.on('get_egress_path_config', function(domain, source, site)
  return kumo.make_egress_path { smtp_port = `+sinkPort+`, prohibited_hosts = {}, enable_tls = 'Disabled' }
end)
`), 0o644)
	relay := startDaemon(t, nil, "--policy", policy)
	if !strings.Contains(relay.log(), "lookup_mx (broken|mx).dest.example broken.dest.example. mx.dest.example. 127.0.0.1") {
		t.Fatalf("kumo.dns.lookup_mx/lookup_addr through the fake DNS:\n%s", relay.log())
	}
	c := testutil.Dial(t, relay.addr)
	c.Expect(t, "220 mx-relay.test")
	c.Cmd(t, "EHLO t.example", "250-")
	for _, rcpt := range []string{"user@dest.example", "user@nullmx.example", "user@nxdomain.example"} {
		c.Cmd(t, "MAIL FROM:<a@x.com>", "250")
		c.Cmd(t, "RCPT TO:<"+rcpt+">", "250")
		c.Cmd(t, "DATA", "354")
		c.SendRaw("Subject: mx\r\n\r\nhi\r\n.\r\n")
		c.Expect(t, "250 OK ids=")
	}
	deadline := time.Now().Add(20 * time.Second)
	for sinkRecipients(t, sinkLogs)["user@dest.example"] < 1 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if sinkRecipients(t, sinkLogs)["user@dest.example"] != 1 {
		t.Fatalf("MX-routed message not delivered\n%s", tail(relay.log(), 20))
	}
	var recs []logrecord.Record
	for time.Now().Before(deadline) {
		recs, _ = logrecord.ReadDir(filepath.Join(dir, "logs"))
		if c := countTypes(recs); c["Delivery"] == 1 && c["Bounce"] == 1 && c["TransientFailure"] == 1 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	byRcpt := map[string]logrecord.Record{}
	for _, r := range recs {
		if r.Type != logrecord.Reception {
			byRcpt[r.Recipient[0]] = r
		}
	}
	if r := byRcpt["user@dest.example"]; r.Type != logrecord.Delivery || r.PeerAddress == nil || r.PeerAddress.Name != "mx.dest.example." ||
		r.Site != "unspecified->(broken|mx).dest.example@smtp_client" {
		t.Fatalf("delivery %+v", r)
	}
	if r := byRcpt["user@nullmx.example"]; r.Type != logrecord.Bounce || r.Response.Code != 556 {
		t.Fatalf("null MX %+v", r)
	}
	if r := byRcpt["user@nxdomain.example"]; r.Type != logrecord.TransientFailure || !strings.Contains(r.Response.Content, "NXDOMAIN") {
		t.Fatalf("NXDOMAIN %+v", r)
	}
	relay.stop(t, syscall.SIGINT)
	sink.stop(t, syscall.SIGINT)
}

// TestRelayRetriesAfterSinkOutage: with the sink down every message gets a
// TransientFailure and waits (its body dropped from memory); once the sink
// is up the retries read the bodies back from the spool and deliver them
// intact.
func TestRelayRetriesAfterSinkOutage(t *testing.T) {
	sinkAddr := freeLoopbackAddr(t)
	_, sinkPort, _ := net.SplitHostPort(sinkAddr)
	dir := t.TempDir()
	policy := filepath.Join(dir, "retry.lua")
	os.WriteFile(policy, []byte(`local kumo = require 'kumo'
kumo.on('init', function()
  kumo.define_spool { name = 'data', path = '`+dir+`/data', kind = 'RocksDB' }
  kumo.define_spool { name = 'meta', path = '`+dir+`/meta', kind = 'RocksDB' }
  kumo.configure_local_logs { log_dir = '`+dir+`/logs', max_segment_duration = '1s' }
  kumo.start_esmtp_listener { listen = '127.0.0.1:0', hostname = 'retry.test' }
end)
kumo.on('smtp_server_message_received', function(msg) msg:set_meta('queue', '[127.0.0.1]:`+sinkPort+`') end)
kumo.on('get_queue_config', function() return kumo.make_queue_config { retry_interval = '3s' } end)
kumo.on('get_egress_path_config', function() return kumo.make_egress_path { prohibited_hosts = {}, enable_tls = 'Disabled' } end)
`), 0o644)
	relay := startDaemon(t, nil, "--policy", policy)
	c := testutil.Dial(t, relay.addr)
	c.Expect(t, "220 retry.test")
	c.Cmd(t, "EHLO t.example", "250-")
	const n = 20
	for i := 0; i < n; i++ {
		c.Cmd(t, "MAIL FROM:<a@x.com>", "250")
		c.Cmd(t, fmt.Sprintf("RCPT TO:<r%d@example.com>", i), "250")
		c.Cmd(t, "DATA", "354")
		c.SendRaw(fmt.Sprintf("Subject: outage %d\r\n\r\n%s.\r\n", i, strings.Repeat(strings.Repeat("z", 70)+"\r\n", 72)))
		c.Expect(t, "250 OK ids=")
	}
	logs := filepath.Join(dir, "logs")
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		recs, _ := logrecord.ReadDir(logs)
		if countTypes(recs)["TransientFailure"] >= n {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	senv, sinkLogs := sinkEnv(t)
	senv = append(senv, "KUMOGO_SINK_LISTEN="+sinkAddr) // the later entry wins
	sink := startDaemon(t, senv, "--policy", "sink.lua")
	deadline = time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		got := 0
		for _, v := range sinkRecipients(t, sinkLogs) {
			got += v
		}
		if got >= n {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	recs, err := logrecord.ReadDir(sinkLogs)
	if err != nil {
		t.Fatal(err)
	}
	if c := countTypes(recs); c["Reception"] != n {
		t.Fatalf("sink received %v, want %d\n%s", c, n, tail(relay.log(), 20))
	}
	for _, r := range recs {
		// each body is 5,000 bytes plus headers: read back intact
		if r.Size < 5000 {
			t.Fatalf("a retried message arrived truncated: %+v", r)
		}
	}
	relay.stop(t, syscall.SIGINT)
	sink.stop(t, syscall.SIGINT)
	rrecs, _ := logrecord.ReadDir(logs)
	if c := countTypes(rrecs); c["Delivery"] != n || c["TransientFailure"] < n {
		t.Fatalf("relay records %v", c)
	}
}

// TestDeferredQueueListener: a listener with deferred_queue = true does not
// call smtp_server_message_received; the message is spooled in the
// internal queue, smtp_server_message_deferred_inject chooses its queue
// (a DeferredInjectionRebind record), and it is delivered from there.
func TestDeferredQueueListener(t *testing.T) {
	sinkAddr := freeLoopbackAddr(t)
	_, sinkPort, _ := net.SplitHostPort(sinkAddr)
	dir := t.TempDir()
	policy := spooledPolicy(t, dir, `
  kumo.configure_local_logs { log_dir = '`+dir+`/logs', max_segment_duration = '1s' }
  kumo.start_esmtp_listener { listen = '127.0.0.1:0', hostname = 'deferred.test', deferred_queue = true }`, `
kumo.on('smtp_server_message_received', function(msg)
  kumo.reject(550, 'smtp_server_message_received must not run with deferred_queue')
end)
kumo.on('smtp_server_message_deferred_inject', function(msg, conn_meta)
  msg:set_meta('queue', '[127.0.0.1]:`+sinkPort+`')
  msg:append_header('X-Deferred-From', conn_meta:get_meta('received_from'))
end)
kumo.on('get_egress_path_config', function() return kumo.make_egress_path { prohibited_hosts = {}, enable_tls = 'Disabled' } end)
`)
	senv, sinkLogs := sinkEnv(t)
	senv = append(senv, "KUMOGO_SINK_LISTEN="+sinkAddr)
	sink := startDaemon(t, senv, "--policy", "sink.lua")
	relay := startDaemon(t, nil, "--policy", policy)
	if strings.Contains(relay.log(), "not implemented") {
		t.Fatalf("deferred_queue logged as not implemented:\n%s", relay.log())
	}
	c := testutil.Dial(t, relay.addr)
	c.Expect(t, "220 deferred.test")
	c.Cmd(t, "EHLO t.example", "250-")
	c.Cmd(t, "MAIL FROM:<a@x.com>", "250")
	c.Cmd(t, "RCPT TO:<deferred@example.com>", "250")
	c.Cmd(t, "DATA", "354")
	c.SendRaw("Subject: later\r\n\r\nbody\r\n.\r\n")
	c.Expect(t, "250 OK ids=")
	if missing := awaitRecipients(t, sinkLogs, []string{"deferred@example.com"}, 20*time.Second); len(missing) > 0 {
		t.Fatalf("not delivered\n%s", tail(relay.log(), 20))
	}
	relay.stop(t, syscall.SIGINT)
	sink.stop(t, syscall.SIGINT)
	recs, err := logrecord.ReadDir(filepath.Join(dir, "logs"))
	if err != nil {
		t.Fatal(err)
	}
	c2 := countTypes(recs)
	if c2["Reception"] != 1 || c2["DeferredInjectionRebind"] != 1 || c2["Delivery"] != 1 {
		t.Fatalf("relay records %v", c2)
	}
	for _, r := range recs {
		if r.Type == logrecord.Reception && r.Queue != "deferred_smtp_inject.kumomta.internal" {
			t.Fatalf("reception queue %q", r.Queue)
		}
	}
}
