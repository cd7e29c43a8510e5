package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kumogo/kumogo/queue/egress/mx/mxtest"
)

// metricValues reads the unlabelled samples and the number of series of
// each family from the daemon's /metrics.
func metricValues(t *testing.T, httpAddr string) (single map[string]float64, series map[string]int) {
	t.Helper()
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	single, series = map[string]float64{}, map[string]int{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name, rest, _ := strings.Cut(line, " ")
		if base, _, labelled := strings.Cut(name, "{"); labelled {
			series[base]++
			continue
		}
		series[name]++
		single[name], _ = strconv.ParseFloat(strings.TrimSpace(rest), 64)
	}
	return single, series
}

// heapAlloc reads HeapAlloc (bytes of live heap objects, right after the
// GC that gc=1 asks for; the page prints runtime.ReadMemStats) from the
// daemon's pprof heap page. Unlike HeapInuse it does not count the free
// room in partly used spans.
func heapAlloc(t *testing.T, pprofAddr string) int {
	t.Helper()
	resp, err := http.Get("http://" + pprofAddr + "/debug/pprof/heap?debug=1&gc=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`# HeapAlloc = (\d+)`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("no HeapAlloc in the heap profile page")
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// TestScaleReapManyDestinations: 2,000 domains, each with its own MX host
// name (so its own scheduled queue, site and ready queue), get one message
// each through a fake DNS server. Once delivered and idle for the
// policy's reap_interval (and the ready queues for theirs), every queue is
// reaped: /metrics and kcli queue-summary show none, and the live heap
// falls back near where it started. Mail to a reaped domain still goes.
func TestScaleReapManyDestinations(t *testing.T) {
	const domains = 2000
	const addrs = 8 // loopback addresses the MX hosts share
	addrOf := func(i int) string { return fmt.Sprintf("127.0.9.%d", 1+i%addrs) }
	first, err := net.Listen("tcp", addrOf(0)+":0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(first.Addr().String())
	lns := []net.Listener{first}
	for i := 1; i < addrs; i++ {
		ln, err := net.Listen("tcp", addrOf(i)+":"+port)
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
	}
	var records, rcpts []string
	for i := 0; i < domains; i++ {
		dom := fmt.Sprintf("r%04d.example", i)
		records = append(records, dom+". 300 IN MX 10 mx."+dom+".", "mx."+dom+". 300 IN A "+addrOf(i))
		rcpts = append(rcpts, "u@"+dom)
	}
	sink := startCountingSink(t, lns...)
	sink.accept.Store(true)
	dns := mxtest.Start(t, records...)
	dir := t.TempDir()
	kcli := filepath.Join(dir, "kcli")
	if out, err := exec.Command("go", "build", "-o", kcli, "../kcli").CombinedOutput(); err != nil {
		t.Fatalf("building kcli: %v\n%s", err, out)
	}
	policy := filepath.Join(dir, "reap.lua")
	os.WriteFile(policy, []byte(`local kumo = require 'kumo'
kumo.on('init', function()
  kumo.dns.configure_resolver { name_servers = { '`+dns.Addr+`' } }
  kumo.define_spool { name = 'data', path = '`+dir+`/data', kind = 'RocksDB' }
  kumo.define_spool { name = 'meta', path = '`+dir+`/meta', kind = 'RocksDB' }
  kumo.start_esmtp_listener { listen = '127.0.0.1:0', hostname = 'reap.test' }
  kumo.start_http_listener { listen = '127.0.0.1:0', hostname = 'reap.test' }
end)
kumo.on('get_queue_config', function() return kumo.make_queue_config { retry_interval = '5s', reap_interval = '10s' } end)
kumo.on('get_egress_path_config', function()
  return kumo.make_egress_path { smtp_port = `+port+`, enable_tls = 'Disabled', prohibited_hosts = {}, idle_timeout = '1s' }
end)
`), 0o644)
	pprofAddr := freeLoopbackAddr(t)
	d := startDaemon(t, []string{"KUMOGO_READY_QUEUE_REAP_INTERVAL=10s"}, "--policy", policy, "--pprof", pprofAddr)
	httpAddr := regexp.MustCompile(`http listener on (\S+)`).FindStringSubmatch(d.log())[1]
	summary := func() string {
		out, err := exec.Command(kcli, "--endpoint", "http://"+httpAddr, "queue-summary").CombinedOutput()
		if err != nil {
			t.Fatalf("kcli queue-summary: %v\n%s", err, out)
		}
		return string(out)
	}
	baseHeap := heapAlloc(t, pprofAddr)

	start := time.Now()
	injectBatches(t, httpAddr, rcpts, 200, "From: bulk@sender.example\r\nSubject: reap\r\n\r\nto many domains\r\n")
	injected := time.Since(start)
	peakSched, peakReady := 0.0, 0.0
	if !waitFor(60*time.Second, func() bool {
		single, _ := metricValues(t, httpAddr)
		peakSched, peakReady = max(peakSched, single["scheduled_queue_count"]), max(peakReady, single["ready_queue_count"])
		return sink.received.Load() >= domains
	}) {
		t.Fatalf("delivered %d of %d\n%s", sink.received.Load(), domains, tail(d.log(), 20))
	}
	// delivered; the queues, empty, wait for their reap interval
	single, series := metricValues(t, httpAddr)
	peakHeap := heapAlloc(t, pprofAddr)
	listed := strings.Count(summary(), ".example")
	t.Logf("injected in %v, delivered in %v; at most %v scheduled and %v ready queues; after delivery scheduled_queue_count %v ready_queue_count %v, scheduled_count series %d, %d queues in queue-summary; HeapAlloc %d → %d",
		injected.Round(time.Millisecond), time.Since(start).Round(time.Millisecond), peakSched, peakReady, single["scheduled_queue_count"], single["ready_queue_count"], series["scheduled_count"], listed, baseHeap, peakHeap)
	if peakSched < domains/2 || peakReady < domains/2 || single["scheduled_queue_count"] == 0 || listed == 0 {
		t.Fatalf("the queues were not there (or gone before their reap interval): %v", single)
	}

	if !waitFor(30*time.Second, func() bool {
		single, _ := metricValues(t, httpAddr)
		return single["scheduled_queue_count"] == 0 && single["ready_queue_count"] == 0
	}) {
		t.Fatalf("queues not reaped: %v", single)
	}
	single, series = metricValues(t, httpAddr)
	if series["scheduled_count"] != 0 || series["ready_count"] != 1 || series["total_messages_delivered"] != 1 || single["message_count"] != 0 {
		t.Fatalf("series left after reaping: %v (message_count %v)", series, single["message_count"])
	}
	if s := summary(); strings.Contains(s, ".example") {
		t.Fatalf("queue-summary still lists queues after reaping:\n%s", s)
	}
	reapedHeap := heapAlloc(t, pprofAddr)
	t.Logf("after reaping: HeapAlloc %d (start %d, with the queues %d): %d bytes per domain given back",
		reapedHeap, baseHeap, peakHeap, (peakHeap-reapedHeap)/domains)
	// The bound: what the 2,000 queues took is mostly given back. What
	// stays is the resolver's cache (answers for 300 s, bounded by its
	// size) and the allocator's own slack.
	if grown, kept := peakHeap-baseHeap, reapedHeap-baseHeap; grown <= 0 || kept > grown/2 {
		t.Errorf("live heap: %d at start, %d with the queues, %d after reaping: more than half of the growth stayed", baseHeap, peakHeap, reapedHeap)
	}

	// a reaped domain gets mail again: its queues are made anew
	injectBatches(t, httpAddr, []string{"again@r0007.example"}, 1, "From: bulk@sender.example\r\nSubject: again\r\n\r\nagain\r\n")
	if !waitFor(20*time.Second, func() bool { return sink.received.Load() >= domains+1 }) {
		t.Fatalf("mail to a reaped domain was not delivered\n%s", tail(d.log(), 20))
	}
	if err := exactlyOnce(sink.counts(), append(rcpts, "again@r0007.example")); err != nil {
		t.Fatal(err)
	}
	d.stop(t, syscall.SIGTERM)
}
