package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kumogo/kumogo/internal/logrecord"
	"github.com/kumogo/kumogo/queue/egress/mx/mxtest"
)

// TestScaleRestartEnumeration: 5,000 messages wait in a RocksDB spool on a
// destination that answers 451; the daemon is killed with SIGKILL and
// started again on the same spool. The restart enumerates every message
// before "initialization complete", and once the destination recovers
// each is delivered exactly once.
func TestScaleRestartEnumeration(t *testing.T) {
	n := scaleMessages(5000)
	ln := listenLoopback(t)
	sink := startCountingSink(t, ln)
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	dir := t.TempDir()
	withLogs := func(p string) string {
		b, _ := os.ReadFile(p)
		os.WriteFile(p, []byte(strings.Replace(string(b), "kumo.start_esmtp_listener",
			"kumo.configure_local_logs { log_dir = '"+dir+"/logs', max_segment_duration = '1s' }\n  kumo.start_esmtp_listener", 1)), 0o644)
		return p
	}
	d := startDaemon(t, nil, "--policy", withLogs(scalePolicy(t, dir, "RocksDB", port, "1h")))
	httpAddr := regexp.MustCompile(`http listener on (\S+)`).FindStringSubmatch(d.log())[1]
	rcpts := make([]string, n)
	for i := range rcpts {
		rcpts[i] = fmt.Sprintf("k%05d@restart.example", i)
	}
	injectBatches(t, httpAddr, rcpts, 500, "From: bulk@sender.example\r\nSubject: restart\r\n\r\nwaiting\r\n")
	if !waitFor(scaleWait(60*time.Second, n, 5000), func() bool { return sink.refused.Load() >= int64(n) }) {
		t.Fatalf("only %d of %d first attempts were answered 451", sink.refused.Load(), n)
	}
	d.cmd.Process.Signal(syscall.SIGKILL)
	<-d.done

	// the same spool, retried soon, with the destination back
	sink.accept.Store(true)
	start := time.Now()
	d2 := startDaemon(t, nil, "--policy", withLogs(scalePolicy(t, dir, "RocksDB", port, "2s")))
	t.Logf("restart to initialization complete: %v", time.Since(start))
	m := regexp.MustCompile(`spool enumerated.*messages=(\d+)`).FindStringSubmatch(d2.log())
	if m == nil || m[1] != strconv.Itoa(n) {
		t.Fatalf("enumeration %q, want %d messages\n%s", m, n, tail(d2.log(), 20))
	}
	if !waitFor(scaleWait(60*time.Second, n, 5000), func() bool { return sink.received.Load() >= int64(n) }) {
		got := sink.counts()
		recs, _ := logrecord.ReadDir(filepath.Join(dir, "logs"))
		for _, r := range recs {
			if len(r.Recipient) > 0 && got[r.Recipient[0]] == 0 && r.Type != logrecord.Reception {
				t.Logf("undelivered %s: %s %d %s", r.Recipient[0], r.Type, r.Response.Code, r.Response.Content)
			}
		}
		t.Fatalf("delivered %d of %d after restart\n%s", sink.received.Load(), n, tail(d2.log(), 20))
	}
	time.Sleep(time.Second) // a duplicate would arrive now
	if err := exactlyOnce(sink.counts(), rcpts); err != nil {
		t.Fatal(err)
	}
	d2.stop(t, syscall.SIGTERM)
}

// TestScaleManyDestinations: 500 domains, each with its own MX host on
// its own loopback address (all served by one sink on one port), resolved
// through a fake DNS server. Every domain's messages arrive once each, and
// at its own MX address only.
func TestScaleManyDestinations(t *testing.T) {
	const domains, perDomain = 500, 2
	addrOf := func(i int) string { return fmt.Sprintf("127.0.%d.%d", 1+i/250, 1+i%250) }
	first, err := net.Listen("tcp", addrOf(0)+":0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(first.Addr().String())
	lns := []net.Listener{first}
	var records []string
	var rcpts []string
	for i := 0; i < domains; i++ {
		if i > 0 {
			ln, err := net.Listen("tcp", addrOf(i)+":"+port)
			if err != nil {
				t.Fatal(err)
			}
			lns = append(lns, ln)
		}
		dom := fmt.Sprintf("d%03d.example", i)
		records = append(records,
			dom+". 300 IN MX 10 mx."+dom+".",
			"mx."+dom+". 300 IN A "+addrOf(i))
		for j := 0; j < perDomain; j++ {
			rcpts = append(rcpts, fmt.Sprintf("u%d@%s", j, dom))
		}
	}
	sink := startCountingSink(t, lns...)
	sink.accept.Store(true)
	dns := mxtest.Start(t, records...)
	dir := t.TempDir()
	policy := filepath.Join(dir, "many.lua")
	os.WriteFile(policy, []byte(`local kumo = require 'kumo'
kumo.on('init', function()
  kumo.dns.configure_resolver { name_servers = { '`+dns.Addr+`' } }
  kumo.define_spool { name = 'data', path = '`+dir+`/data', kind = 'RocksDB' }
  kumo.define_spool { name = 'meta', path = '`+dir+`/meta', kind = 'RocksDB' }
  kumo.start_esmtp_listener { listen = '127.0.0.1:0', hostname = 'many.test' }
  kumo.start_http_listener { listen = '127.0.0.1:0', hostname = 'many.test' }
end)
kumo.on('get_queue_config', function() return kumo.make_queue_config { retry_interval = '5s' } end)
kumo.on('get_egress_path_config', function()
  return kumo.make_egress_path { smtp_port = `+port+`, enable_tls = 'Disabled', prohibited_hosts = {} }
end)
`), 0o644)
	d := startDaemon(t, nil, "--policy", policy)
	httpAddr := regexp.MustCompile(`http listener on (\S+)`).FindStringSubmatch(d.log())[1]
	injectBatches(t, httpAddr, rcpts, 200, "From: bulk@sender.example\r\nSubject: many\r\n\r\nto many domains\r\n")
	if !waitFor(60*time.Second, func() bool { return sink.received.Load() >= int64(len(rcpts)) }) {
		t.Fatalf("delivered %d of %d\n%s", sink.received.Load(), len(rcpts), tail(d.log(), 20))
	}
	time.Sleep(time.Second) // a duplicate would arrive now
	if err := exactlyOnce(sink.counts(), rcpts); err != nil {
		t.Fatal(err)
	}
	sink.mu.Lock()
	for i := 0; i < domains; i++ {
		dom := fmt.Sprintf("d%03d.example", i)
		got := sink.byAddr[addrOf(i)]
		if len(got) != 1 || got[dom] != perDomain {
			t.Errorf("MX %s of %s received %v", addrOf(i), dom, got)
		}
	}
	sink.mu.Unlock()
	d.stop(t, syscall.SIGTERM)
}
