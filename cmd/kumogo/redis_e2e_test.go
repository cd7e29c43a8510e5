package main

import (
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kumogo/kumogo/internal/testutil"
)

// redisNode starts a kumogo node whose limits are shared through r.
func redisNode(t *testing.T, r *testutil.RedisServer, sink *countSink) *daemonProc {
	t.Helper()
	dir := t.TempDir()
	return startDaemon(t, nil, "--policy", shapingPolicy(t, dir, sink.addr,
		fmt.Sprintf("  kumo.configure_redis_throttles { node = '%s' }\n", r.URL())))
}

// TestRedisSharedRateTwoNodes: two kumogo nodes on one redis-server
// deliver through egress paths of the same name; their max_message_rate
// (10/s) is one rate between them, within 10 %, where unshared it would
// be twice that; so is a kumo.make_throttle used by both.
func TestRedisSharedRateTwoNodes(t *testing.T) {
	r := testutil.StartRedis(t)
	sink := startCountSink(t, nil)
	a, b := redisNode(t, r, sink), redisNode(t, r, sink)
	if !strings.Contains(a.log(), "throttles and connection limits are shared through redis") {
		t.Fatalf("no sharing announced:\n%s", a.log())
	}
	sendBatch(t, a.addr, "cluster-rate.test", 30)
	sendBatch(t, b.addr, "cluster-rate.test", 30)
	// kumo.make_throttle('mt-rate', '10/s,max_burst=1') in
	// throttle_insert_ready_queue, on both nodes
	sendBatch(t, a.addr, "mt.test", 30)
	sendBatch(t, b.addr, "mt.test", 30)
	// 60 messages at 10/s with no burst take 5.9 s
	recs := waitCount(t, sink, "cluster-rate.test", 60, 15*time.Second)
	within10(t, "max_message_rate shared by two nodes", rateOf(recs), 10)
	within10(t, "kumo.make_throttle shared by two nodes", rateOf(waitCount(t, sink, "mt.test", 60, 15*time.Second)), 10)
	a.stop(t, syscall.SIGTERM)
	b.stop(t, syscall.SIGTERM)
}

// TestRedisLeasesReleasedOnKill: a node holding shared connection leases
// (additional_connection_limits cluster-conns=2, its connections kept
// busy by a slow sink) is killed with SIGKILL. The leases last, as in
// KumoMTA, the sum of the egress path's timeouts (17 s for hold.test):
// Redis holds them with that expiry, they leave Redis within it after the
// kill (and not within the 10 s that kumogo used to fix), and a second
// node, waiting for the same limit, then connects.
func TestRedisLeasesReleasedOnKill(t *testing.T) {
	const ttl = 17 * time.Second
	r := testutil.StartRedis(t)
	sink := startCountSink(t, map[string]time.Duration{"hold.test": 5 * time.Second})
	a := redisNode(t, r, sink)
	sendBatch(t, a.addr, "hold.test", 20)
	live := func() int {
		return r.Int("ZCOUNT", "kumogo:limit:cluster-conns", strconv.FormatInt(time.Now().UnixMilli(), 10), "+inf")
	}
	deadline := time.Now().Add(10 * time.Second)
	for live() != 2 || sink.maxOpen("hold.test") != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("node A did not take both leases: %d in Redis, %d connections", live(), sink.maxOpen("hold.test"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	now := time.Now()
	in := func(d time.Duration) string { return strconv.FormatInt(now.Add(d).UnixMilli(), 10) }
	if n := r.Int("ZCOUNT", "kumogo:limit:cluster-conns", in(ttl-3*time.Second), in(ttl+time.Second)); n != 2 {
		t.Fatalf("%d leases expire about %v from now (the path's timeouts), want 2", n, ttl)
	}
	b := redisNode(t, r, sink)
	sendBatch(t, b.addr, "hold2.test", 2)
	time.Sleep(time.Second)
	if got := sink.maxOpen("hold2.test"); got != 0 {
		t.Fatalf("node B connected past the shared limit held by node A (%d connections)", got)
	}
	killed := time.Now()
	a.cmd.Process.Kill()
	<-a.done
	// B takes the slots over once A's leases expire
	for sink.maxOpen("hold2.test") == 0 {
		if time.Since(killed) > ttl+2*time.Second {
			t.Fatalf("node B never connected within the %v lease TTL after node A died (%d leases in Redis)", ttl, live())
		}
		time.Sleep(100 * time.Millisecond)
	}
	took := time.Since(killed)
	t.Logf("leases released %v after SIGKILL", took.Round(100*time.Millisecond))
	// renewed every 3.3 s, they expire 13.7-17 s after the kill
	if took < ttl-5*time.Second {
		t.Fatalf("node A's leases were gone %v after SIGKILL, before their %v TTL could have run out", took, ttl)
	}
	if live() > 2 {
		t.Errorf("%d leases in Redis, limit 2", live())
	}
}

// TestRedisOutageUnderLoad: redis-server stops and starts again while a
// node delivers under a shared rate; every message arrives exactly once,
// the log says that local limits took over and that sharing resumed.
func TestRedisOutageUnderLoad(t *testing.T) {
	r := testutil.StartRedis(t)
	sink := startCountSink(t, nil)
	a := redisNode(t, r, sink)
	sendBatch(t, a.addr, "outage.test", 120) // 3 s at 40/s
	time.Sleep(700 * time.Millisecond)
	r.Stop()
	time.Sleep(time.Second)
	r.Start()
	recs := waitCount(t, sink, "outage.test", 120, 15*time.Second)
	time.Sleep(500 * time.Millisecond)
	seen := map[string]int{}
	for _, rec := range sink.byDomain("outage.test") {
		seen[rec.rcpt]++
	}
	if len(seen) != 120 || len(recs) != 120 || len(sink.byDomain("outage.test")) != 120 {
		t.Errorf("%d distinct recipients in %d deliveries, want 120 once each", len(seen), len(sink.byDomain("outage.test")))
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(a.log(), "reachable again") && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	for _, want := range []string{"redis shared throttles unavailable; delivery goes on with local limits", "redis shared throttles reachable again"} {
		if !strings.Contains(a.log(), want) {
			t.Errorf("log lacks %q:\n%s", want, a.log())
		}
	}
	a.stop(t, syscall.SIGTERM)
}
