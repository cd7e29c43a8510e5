package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kumogo/kumogo/internal/logrecord"
	"github.com/kumogo/kumogo/queue/egress/mx/mxtest"
)

// pySendTimed sends one message per recipient with Python's smtplib over
// one session and prints the seconds each DATA took to be answered.
const pySendTimed = `
import smtplib, sys, time
host, port = sys.argv[1].rsplit(':', 1)
s = smtplib.SMTP(host, int(port), local_hostname='py.example', timeout=30)
s.ehlo()
for rcpt in sys.argv[2:]:
    t = time.monotonic()
    refused = s.sendmail('sender@example.com', [rcpt], 'Subject: dns\r\n\r\nbody\r\n')
    assert refused == {}, refused
    print('%s %.3f' % (rcpt, time.monotonic() - t))
s.quit()
`

// TestReceptionDoesNotWaitForDNS: the resolver never answers for one
// domain. Messages to it still get their 250 at once through a real SMTP
// client, and wait in their scheduled queue (no record but Reception)
// while mail to a domain that resolves is delivered; once the resolver
// answers they are delivered too.
func TestReceptionDoesNotWaitForDNS(t *testing.T) {
	senv, sinkLogs := sinkEnv(t)
	sink := startDaemon(t, senv, "--policy", "sink.lua")
	_, sinkPort, _ := net.SplitHostPort(sink.addr)
	dns := mxtest.Start(t,
		"slow.example. 300 IN MX 10 mx.slow.example.",
		"mx.slow.example. 300 IN A 127.0.0.1",
		"fast.example. 300 IN MX 10 mx.fast.example.",
		"mx.fast.example. 300 IN A 127.0.0.1",
	)
	dns.Silence("slow.example")
	dir := t.TempDir()
	policy := filepath.Join(dir, "dns.lua")
	os.WriteFile(policy, []byte(`local kumo = require 'kumo'
kumo.on('init', function()
  kumo.dns.configure_resolver { name_servers = { '`+dns.Addr+`' } }
  kumo.define_spool { name = 'data', path = '`+dir+`/data' }
  kumo.define_spool { name = 'meta', path = '`+dir+`/meta' }
  kumo.configure_local_logs { log_dir = '`+dir+`/logs', max_segment_duration = '1s' }
  kumo.start_esmtp_listener { listen = '127.0.0.1:0', hostname = 'dns-relay.test' }
end)
kumo.on('get_queue_config', function(domain)
  return kumo.make_queue_config { retry_interval = '2s' }
end)
kumo.on('get_egress_path_config', function(domain, source, site)
  return kumo.make_egress_path { smtp_port = `+sinkPort+`, prohibited_hosts = {}, enable_tls = 'Disabled' }
end)
`), 0o644)
	relay := startDaemon(t, nil, "--policy", policy)

	var slow, fast []string
	for i := 0; i < 5; i++ {
		slow = append(slow, fmt.Sprintf("s%d@slow.example", i))
		fast = append(fast, fmt.Sprintf("f%d@fast.example", i))
	}
	// The first message a fresh relay receives also pays for its first
	// spool commit and log segment, which a loaded disk can stall for
	// seconds; a message to the resolving domain goes first to take that
	// cost. Each silent-domain message still opens its queue's first
	// resolution, so a reception that waited for DNS is still caught.
	warm := "w0@fast.example"
	fast = append(fast, warm)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rcpts := append(append([]string{warm}, slow...), fast[:len(fast)-1]...)
	out, err := exec.CommandContext(ctx, "python3", append([]string{"-c", pySendTimed, relay.addr}, rcpts...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("smtplib: %v\n%s\n%s", err, out, tail(relay.log(), 20))
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var rcpt string
		var secs float64
		if _, err := fmt.Sscanf(line, "%s %f", &rcpt, &secs); err != nil {
			t.Fatalf("smtplib output %q", line)
		}
		if rcpt != warm && secs > 1 {
			t.Fatalf("the 250 for %s took %.3fs while the resolver was silent\n%s", rcpt, secs, out)
		}
	}
	if missing := awaitRecipients(t, sinkLogs, fast, 15*time.Second); len(missing) > 0 {
		t.Fatalf("mail to a domain that resolves was held: %v\n%s", missing, tail(relay.log(), 20))
	}
	if dns.Queries("slow.example", "MX", "") == 0 {
		t.Fatal("the relay never asked for slow.example's MX")
	}
	// waiting, not failed: nothing but their Reception records yet
	recs, err := logrecord.ReadDir(filepath.Join(dir, "logs"))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if strings.HasSuffix(r.Recipient[0], "@slow.example") && r.Type != logrecord.Reception {
			t.Fatalf("a message to the silent domain has a %s record: %+v", r.Type, r)
		}
	}
	if got := sinkRecipients(t, sinkLogs); got["s0@slow.example"] != 0 {
		t.Fatalf("delivered to slow.example before its MX was answered: %v", got)
	}
	dns.Answer("slow.example")
	if missing := awaitRecipients(t, sinkLogs, slow, 30*time.Second); len(missing) > 0 {
		t.Fatalf("not delivered once the resolver answered: %v\n%s", missing, tail(relay.log(), 20))
	}
	relay.stop(t, syscall.SIGINT)
	sink.stop(t, syscall.SIGINT)
}
