package main

import (
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kumogo/kumogo/internal/logrecord"
	"github.com/kumogo/kumogo/internal/testutil"
)

// TestSuspendWhenProxyUnhealthy: the source "flaky" sends through a SOCKS5
// proxy that is down and has suspend_when_proxy_unhealthy = { duration =
// '5s' }. Its first failed connection suspends it: mail of a pool that
// also has "good" (a real haproxy) all goes through "good" meanwhile, mail
// of a pool of "flaky" alone waits without further attempts, and /metrics
// shows KumoMTA's egress_source_health_* series. The proxy then comes up;
// when the suspension ends the waiting mail goes through it.
func TestSuspendWhenProxyUnhealthy(t *testing.T) {
	h := testutil.StartHAProxy(t)
	proxyAddr := unusedAddr(t)

	sink := startCountSink(t, nil)
	dir := t.TempDir()
	policy := spooledPolicy(t, dir, `
  kumo.configure_local_logs { log_dir = '`+dir+`/logs', max_segment_duration = '1s' }
  kumo.start_esmtp_listener { listen = '127.0.0.1:0', hostname = 'relay.test', relay_hosts = { '127.0.0.1' } }
  kumo.start_http_listener { listen = '127.0.0.1:0' }
`, sourcesPolicy(sink.addr, `{
  flaky = { socks5_proxy_server = '`+proxyAddr+`', socks5_proxy_source_address = '127.0.0.3',
    suspend_when_proxy_unhealthy = { duration = '5s' } },
  good = { ha_proxy_server = '`+h.Addr+`', ha_proxy_source_address = '127.0.0.2' },
}`, `{
  ['mixed.test'] = { { name = 'flaky', weight = 1 }, { name = 'good', weight = 1 } },
  ['solo.test'] = { { name = 'flaky' } },
}`))
	d := startDaemon(t, nil, "--policy", policy)
	m := regexp.MustCompile(`http listener on (\S+)`).FindStringSubmatch(d.log())
	if m == nil {
		t.Fatalf("no http listener line:\n%s", d.log())
	}
	metricsURL := "http://" + m[1]
	gauge := func() (suspended, suspensions, failures float64) {
		fams := scrapeMetrics(t, metricsURL)
		value := func(name, label string) float64 {
			f := fams[name]
			if f == nil {
				return -1
			}
			for _, s := range f.GetMetric() {
				ok := false
				for _, l := range s.GetLabel() {
					ok = ok || (l.GetName() == "source" && l.GetValue() == "flaky")
				}
				for _, l := range s.GetLabel() {
					if ok && l.GetName() == label && l.GetValue() == "ProxyUnhealthy" {
						if s.GetGauge() != nil {
							return s.GetGauge().GetValue()
						}
						return s.GetCounter().GetValue()
					}
				}
			}
			return -1
		}
		return value("egress_source_health_suspended", "reason"), value("egress_source_health_suspensions_total", "reason"),
			value("egress_source_connection_failures_total", "kind")
	}

	sendBatch(t, d.addr, "solo.test", 1)
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(d.log(), "egress source suspended") {
		if time.Now().After(deadline) {
			t.Fatalf("flaky was not suspended:\n%s", tail(d.log(), 20))
		}
		time.Sleep(50 * time.Millisecond)
	}
	suspendedAt := time.Now()
	sendBatch(t, d.addr, "mixed.test", 4)
	sendBatch(t, d.addr, "solo.test", 2)
	for _, r := range waitCount(t, sink, "mixed.test", 4, 15*time.Second) {
		if r.peerIP != "127.0.0.2" {
			t.Errorf("mixed.test went out from %s while flaky was suspended, want 127.0.0.2 (good)", r.peerIP)
		}
	}
	if time.Since(suspendedAt) < 5*time.Second {
		if s, n, f := gauge(); s != 1 || n != 1 || f < 1 {
			t.Errorf("while suspended: egress_source_health_suspended %v, _suspensions_total %v, connection_failures_total %v; want 1, 1, >= 1", s, n, f)
		}
	} else {
		t.Logf("the machine is slow: the suspension ended before the metrics were read")
	}
	if got := len(sink.byDomain("solo.test")); got != 0 {
		t.Fatalf("%d solo.test messages delivered while its only source was suspended", got)
	}

	// the proxy comes up; at the end of the suspension the held mail goes
	testutil.StartSOCKS5On(t, proxyAddr, nil)
	for _, r := range waitCount(t, sink, "solo.test", 2, 20*time.Second) {
		if r.peerIP != "127.0.0.3" {
			t.Errorf("solo.test went out from %s, want 127.0.0.3 through the proxy", r.peerIP)
		}
	}
	if took := time.Since(suspendedAt); took < 4*time.Second {
		t.Errorf("held mail went out %v after the suspension began, before its 5 s were over", took)
	}
	if !strings.Contains(d.log(), "egress source suspension over") {
		t.Errorf("no log line for the end of the suspension:\n%s", tail(d.log(), 20))
	}
	if s, n, _ := gauge(); s != 0 || n != 1 {
		t.Errorf("after the suspension: egress_source_health_suspended %v, _suspensions_total %v; want 0, 1", s, n)
	}

	d.stop(t, syscall.SIGTERM)
	recs, err := logrecord.ReadDir(filepath.Join(dir, "logs"))
	if err != nil {
		t.Fatal(err)
	}
	failures := map[string]int{}
	for _, r := range recs {
		if r.Type == logrecord.TransientFailure {
			failures[r.Queue]++
		}
	}
	// the one message whose connection failed; no other attempt was made
	if failures["solo.test"] != 1 || failures["mixed.test"] != 0 {
		t.Errorf("TransientFailure records by queue %v, want solo.test 1 only", failures)
	}
}
