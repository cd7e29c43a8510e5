package main

import (
	"net"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/kumogo/kumogo/internal/logrecord"
)

// TestMTASTSEnforceThroughDaemon: with kumo.dns.configure_test_mta_sts, a
// domain whose enforce policy does not list its MX fails to resolve
// (KumoMTA's "451 4.4.4 failed to resolve queue ...: MTA-STS enforce
// policy ... permits none of its MX hosts" TransientFailure) and is never
// delivered; a domain whose enforce policy lists one of its two MX hosts
// is delivered there, with a site name of that host only; a domain whose
// testing policy does not list its MX is delivered; so is a domain
// without a policy. With kumo.dns.set_mta_sts_enabled(false) no policy is
// consulted and the enforced domain is delivered too.
func TestMTASTSEnforceThroughDaemon(t *testing.T) {
	for _, enabled := range []bool{true, false} {
		t.Run(map[bool]string{true: "enabled", false: "set_mta_sts_enabled(false)"}[enabled], func(t *testing.T) {
			testMTASTSThroughDaemon(t, enabled)
		})
	}
}

func testMTASTSThroughDaemon(t *testing.T, enabled bool) {
	senv, sinkLogs := sinkEnv(t)
	sink := startDaemon(t, senv, "--policy", "sink.lua")
	_, sinkPort, _ := net.SplitHostPort(sink.addr)
	dir := t.TempDir()
	policy := spooledPolicy(t, dir, `
  kumo.configure_local_logs { log_dir = '`+dir+`/logs', max_segment_duration = '1s' }
  kumo.start_esmtp_listener { listen = '127.0.0.1:0', hostname = 'sts-relay.test' }
  kumo.dns.set_mta_sts_enabled(`+map[bool]string{true: "true", false: "false"}[enabled]+`)
  kumo.dns.configure_test_resolver { [[
$ORIGIN test.
enforced.test.    MX 10 mx.enforced.test.
mx.enforced.test. A  127.0.0.1
testing.test.     MX 10 mx.testing.test.
mx.testing.test.  A  127.0.0.1
plain.test.       MX 10 mx.plain.test.
mx.plain.test.    A  127.0.0.1
partial.test.     MX 10 mx1.partial.test.
partial.test.     MX 20 mx2.partial.test.
mx1.partial.test. A  127.0.0.1
mx2.partial.test. A  127.0.0.1
]] }
  kumo.dns.configure_test_mta_sts {
    ['enforced.test'] = 'version: STSv1\nmode: enforce\nmx: mx.elsewhere.test\nmax_age: 86400\n',
    ['testing.test'] = 'version: STSv1\nmode: testing\nmx: mx.elsewhere.test\nmax_age: 86400\n',
    ['partial.test'] = 'version: STSv1\nmode: enforce\nmx: mx2.partial.test\nmax_age: 86400\n',
  }`, `
kumo.on('get_queue_config', function() return kumo.make_queue_config { retry_interval = '1m' } end)
kumo.on('get_egress_path_config', function()
  -- the sink's certificate is self-signed: the TLS that an enforce policy
  -- requires is left out (enable_mta_sts only governs that, not the hosts)
  return kumo.make_egress_path { smtp_port = `+sinkPort+`, prohibited_hosts = {}, enable_tls = 'Disabled', enable_mta_sts = false }
end)
`)
	relay := startDaemon(t, nil, "--policy", policy)
	rcpts := []string{"a@enforced.test", "b@testing.test", "c@plain.test", "d@partial.test"}
	out, err := exec.Command("python3", append([]string{"-c", pySendTimed, relay.addr}, rcpts...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("smtplib: %v\n%s\n%s", err, out, tail(relay.log(), 20))
	}
	if !enabled {
		if missing := awaitRecipients(t, sinkLogs, rcpts, 20*time.Second); len(missing) > 0 {
			t.Fatalf("not delivered: %v\n%s", missing, tail(relay.log(), 20))
		}
		sites := deliverySites(t, filepath.Join(dir, "logs"), 4)
		if sites["d@partial.test"] != "unspecified->(mx1|mx2).partial.test@smtp_client" {
			t.Errorf("sites %v: without MTA-STS both MX hosts make the site", sites)
		}
		relay.stop(t, syscall.SIGINT)
		sink.stop(t, syscall.SIGINT)
		return
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
	if want := `451 4.4.4 failed to resolve queue enforced.test: MTA-STS enforce policy for enforced.test permits none of its MX hosts ["mx.enforced.test."]; allowed mx patterns: ["mx.elsewhere.test"]. The destination is undeliverable until its MTA-STS policy is corrected.`; failure.Response.String() != want {
		t.Errorf("failure %q\nwant    %q", failure.Response.String(), want)
	}
	sites := deliverySites(t, filepath.Join(dir, "logs"), 3)
	if sites["d@partial.test"] != "unspecified->mx2.partial.test@smtp_client" || sites["c@plain.test"] != "unspecified->mx.plain.test@smtp_client" {
		t.Errorf("sites %v: the enforce policy of partial.test permits mx2 only", sites)
	}
	if got := sinkRecipients(t, sinkLogs); got["a@enforced.test"] != 0 {
		t.Errorf("delivered despite the enforce policy: %v", got)
	}
	relay.stop(t, syscall.SIGINT)
	sink.stop(t, syscall.SIGINT)
}

// deliverySites waits for n Delivery records in dir and returns their
// site (the ready queue: source->site@protocol) by recipient.
func deliverySites(t *testing.T, dir string, n int) map[string]string {
	t.Helper()
	sites := map[string]string{}
	deadline := time.Now().Add(15 * time.Second)
	for len(sites) < n && time.Now().Before(deadline) {
		recs, _ := logrecord.ReadDir(dir)
		for _, r := range recs {
			if r.Type == logrecord.Delivery {
				sites[r.Recipient[0]] = r.Site
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return sites
}
