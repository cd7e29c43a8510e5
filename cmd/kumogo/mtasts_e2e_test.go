package main

import (
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kumogo/kumogo/internal/logrecord"
)

// TestMTASTSEnforceThroughDaemon: with kumo.dns.configure_test_mta_sts, a
// domain whose enforce policy does not list its MX gets a
// TransientFailure naming the policy and is never delivered; a domain
// whose testing policy does not list its MX is delivered; so is a domain
// without a policy.
func TestMTASTSEnforceThroughDaemon(t *testing.T) {
	senv, sinkLogs := sinkEnv(t)
	sink := startDaemon(t, senv, "--policy", "sink.lua")
	_, sinkPort, _ := net.SplitHostPort(sink.addr)
	dir := t.TempDir()
	policy := spooledPolicy(t, dir, `
  kumo.configure_local_logs { log_dir = '`+dir+`/logs', max_segment_duration = '1s' }
  kumo.start_esmtp_listener { listen = '127.0.0.1:0', hostname = 'sts-relay.test' }
  kumo.dns.configure_test_resolver { [[
$ORIGIN test.
enforced.test.    MX 10 mx.enforced.test.
mx.enforced.test. A  127.0.0.1
testing.test.     MX 10 mx.testing.test.
mx.testing.test.  A  127.0.0.1
plain.test.       MX 10 mx.plain.test.
mx.plain.test.    A  127.0.0.1
]] }
  kumo.dns.configure_test_mta_sts {
    ['enforced.test'] = 'version: STSv1\nmode: enforce\nmx: mx.elsewhere.test\nmax_age: 86400\n',
    ['testing.test'] = 'version: STSv1\nmode: testing\nmx: mx.elsewhere.test\nmax_age: 86400\n',
  }`, `
kumo.on('get_queue_config', function() return kumo.make_queue_config { retry_interval = '1m' } end)
kumo.on('get_egress_path_config', function()
  return kumo.make_egress_path { smtp_port = `+sinkPort+`, prohibited_hosts = {}, enable_tls = 'Disabled' }
end)
`)
	relay := startDaemon(t, nil, "--policy", policy)
	rcpts := []string{"a@enforced.test", "b@testing.test", "c@plain.test"}
	out, err := exec.Command("python3", append([]string{"-c", pySendTimed, relay.addr}, rcpts...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("smtplib: %v\n%s\n%s", err, out, tail(relay.log(), 20))
	}
	if missing := awaitRecipients(t, sinkLogs, rcpts[1:], 20*time.Second); len(missing) > 0 {
		t.Fatalf("not delivered: %v\n%s", missing, tail(relay.log(), 20))
	}
	deadline := time.Now().Add(15 * time.Second)
	var failure *logrecord.Record
	for failure == nil && time.Now().Before(deadline) {
		recs, _ := logrecord.ReadDir(filepath.Join(dir, "logs"))
		for i, r := range recs {
			if r.Type == logrecord.TransientFailure && r.Recipient[0] == "a@enforced.test" {
				failure = &recs[i]
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	if failure == nil {
		t.Fatalf("no TransientFailure for the enforced domain\n%s", tail(relay.log(), 20))
	}
	if !strings.Contains(failure.Response.Content, "MTA-STS policy (mode enforce, mx mx.elsewhere.test) of enforced.test allows none of the MX hosts mx.enforced.test") {
		t.Errorf("failure %+v", failure.Response)
	}
	if got := sinkRecipients(t, sinkLogs); got["a@enforced.test"] != 0 {
		t.Errorf("delivered despite the enforce policy: %v", got)
	}
	relay.stop(t, syscall.SIGINT)
	sink.stop(t, syscall.SIGINT)
}
