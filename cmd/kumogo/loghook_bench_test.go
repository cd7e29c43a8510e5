package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kumogo/kumogo/internal/testutil"
)

// TestLogHookThroughput is the log-hook benchmark of BENCHMARKS.md, one
// command, interleaved A/B: it runs only with KUMOGO_BENCH_LOGHOOK=N
// (messages per run) and KUMOGO_BENCH_REPS=R (default 3). Each repetition
// runs every mode once, in an order rotated from one repetition to the
// next, each with a fresh daemon and RocksDB spools:
//
//	sink/none, sink/unbatched, sink/batched: N messages to queue `null`
//	(one Reception record each); no hook, or policy-extras.log_hooks
//	new_json unbatched or batched (100 records, 100 ms) to a Go HTTP
//	receiver. Reported: the reception rate, and the records per second
//	until the receiver has all N records.
//	relay/none, relay/batched: N messages relayed to a bare go-smtp sink
//	on loopback, without a hook or with the batched webhook hook (2N
//	records: Reception and Delivery). Reported: messages per second
//	until the sink has all N, and records per second until the receiver
//	has all 2N.
//
// The medians of each mode and the ratio hook/no hook are printed at
// the end.
func TestLogHookThroughput(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("KUMOGO_BENCH_LOGHOOK"))
	if n <= 0 {
		t.Skip("set KUMOGO_BENCH_LOGHOOK=N to measure")
	}
	reps, _ := strconv.Atoi(os.Getenv("KUMOGO_BENCH_REPS"))
	if reps <= 0 {
		reps = 3
	}
	modes := []string{"sink/none", "sink/unbatched", "sink/batched", "relay/none", "relay/batched"}
	rate := map[string][]float64{}    // messages/s: reception (sink) or delivered (relay)
	records := map[string][]float64{} // records/s through the hook
	for rep := range reps {
		order := append(slices.Clone(modes[rep%len(modes):]), modes[:rep%len(modes)]...)
		for _, mode := range order {
			r, rec := benchHookRun(t, mode, n)
			rate[mode] = append(rate[mode], r)
			if rec > 0 {
				records[mode] = append(records[mode], rec)
			}
			line := fmt.Sprintf("rep=%d mode=%-14s msgs/s=%7.0f", rep+1, mode, r)
			if rec > 0 {
				line += fmt.Sprintf(" records/s=%7.0f", rec)
			}
			t.Log(line)
		}
	}
	med := func(xs []float64) float64 {
		s := slices.Clone(xs)
		slices.Sort(s)
		return s[len(s)/2]
	}
	spread := func(xs []float64) string {
		return fmt.Sprintf("%.0f (%.0f–%.0f)", med(xs), slices.Min(xs), slices.Max(xs))
	}
	for _, mode := range modes {
		line := fmt.Sprintf("median mode=%-14s msgs/s=%s", mode, spread(rate[mode]))
		if len(records[mode]) > 0 {
			line += " records/s=" + spread(records[mode])
		}
		t.Log(line)
	}
	for _, p := range [][2]string{{"sink/unbatched", "sink/none"}, {"sink/batched", "sink/none"}, {"relay/batched", "relay/none"}} {
		// per repetition, the pair ran back to back
		var ratios []float64
		for i := range rate[p[0]] {
			ratios = append(ratios, rate[p[0]][i]/rate[p[1]][i])
		}
		t.Logf("ratio %s/%s: median %.2f (per repetition %s)", p[0], p[1], med(ratios), fmtList(ratios))
	}
}

func fmtList(xs []float64) string {
	var s []string
	for _, x := range xs {
		s = append(s, fmt.Sprintf("%.2f", x))
	}
	return strings.Join(s, ", ")
}

// benchHookRun runs one mode of TestLogHookThroughput and returns the
// message rate and the hook's record rate (0 without a hook).
func benchHookRun(t *testing.T, mode string, n int) (float64, float64) {
	t.Helper()
	const sessions = 4
	dir := t.TempDir()
	recv := newWebhookReceiver()
	addr := freeLoopbackAddr(t)
	recv.serve(t, addr)
	scenario, hookMode, _ := strings.Cut(mode, "/")
	hook := ""
	switch hookMode {
	case "unbatched":
		hook = `log_hooks:new_json { name = 'webhook', url = 'http://` + addr + `/log' }`
	case "batched":
		hook = `log_hooks:new_json { name = 'webhook', url = 'http://` + addr + `/log', batch_size = 100, min_batch_size = 100, max_batch_latency = '100ms' }`
	}
	route := `msg:set_meta('queue', 'null')`
	var sink interface{ Count() int64 }
	if scenario == "relay" {
		s := testutil.StartBareSinkServer(t)
		sink = countFunc(func() int64 { return s.Messages.Load() })
		route = `msg:set_meta('queue', '[127.0.0.1]:` + strings.TrimPrefix(s.Addr(), "127.0.0.1:") + `')`
	}
	policy := filepath.Join(dir, "policy.lua")
	src := `local kumo = require 'kumo'
local log_hooks = require 'policy-extras.log_hooks'
` + hook + `
kumo.on('init', function()
  kumo.define_spool { name = 'data', path = '` + dir + `/data', kind = 'RocksDB' }
  kumo.define_spool { name = 'meta', path = '` + dir + `/meta', kind = 'RocksDB' }
  kumo.start_esmtp_listener { listen = '127.0.0.1:0', relay_hosts = { '127.0.0.1' } }
end)
kumo.on('smtp_server_message_received', function(msg) ` + route + ` end)
kumo.on('get_egress_path_config', function(routing_domain, egress_source, site_name)
  return kumo.make_egress_path { connection_limit = 32, max_deliveries_per_connection = 10000, enable_tls = 'Disabled', prohibited_hosts = {} }
end)
`
	if err := os.WriteFile(policy, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"--policy", policy}
	profDir := os.Getenv("KUMOGO_BENCH_PPROF")
	pprofAddr := ""
	if profDir != "" {
		pprofAddr = freeLoopbackAddr(t)
		args = append(args, "--pprof", pprofAddr)
	}
	d := startDaemon(t, nil, args...)
	defer d.stop(t, syscall.SIGTERM)
	if profDir != "" {
		stop := benchProfile(t, pprofAddr, filepath.Join(profDir, strings.ReplaceAll(mode, "/", "-")+".pprof"))
		defer stop()
	}
	start := time.Now()
	var wg sync.WaitGroup
	for s := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sendMessages(t, d.addr, n/sessions, func(i int) string { return fmt.Sprintf("u%d.%d@example.com", s, i) }, func(i int) string { return "bench" })
		}()
	}
	wg.Wait()
	msgRate := float64(n) / time.Since(start).Seconds()
	if sink != nil {
		deadline := time.Now().Add(5 * time.Minute)
		for sink.Count() < int64(n) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: the sink has %d of %d messages after 5 minutes\n%s", mode, sink.Count(), n, tail(d.log(), 30))
			}
			time.Sleep(time.Millisecond)
		}
		msgRate = float64(n) / time.Since(start).Seconds()
	}
	if hookMode == "none" {
		return msgRate, 0
	}
	want := map[string]int{"Reception": n}
	total := n
	if scenario == "relay" {
		want["Delivery"] = n
		total = 2 * n
	}
	recv.waitCounts(t, want, 5*time.Minute, d)
	return msgRate, float64(total) / time.Since(start).Seconds()
}

type countFunc func() int64

func (f countFunc) Count() int64 { return f() }

// benchProfile takes a CPU profile of the daemon over the next
// KUMOGO_BENCH_PPROF_SECONDS (default 5) seconds into file; stop waits
// for it (KUMOGO_BENCH_PPROF=DIR: one file per mode in DIR).
func benchProfile(t *testing.T, pprofAddr, file string) (stop func()) {
	t.Helper()
	secs := os.Getenv("KUMOGO_BENCH_PPROF_SECONDS")
	if secs == "" {
		secs = "5"
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		resp, err := http.Get("http://" + pprofAddr + "/debug/pprof/profile?seconds=" + secs)
		if err != nil {
			t.Logf("profile: %v", err)
			return
		}
		defer resp.Body.Close()
		f, err := os.Create(file)
		if err != nil {
			t.Logf("profile: %v", err)
			return
		}
		defer f.Close()
		io.Copy(f, resp.Body)
	}()
	return func() { <-done }
}
