package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
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
// Every run also reports the daemon's CPU time per 1,000 messages, from
// the first message until the last record (or message) arrived: on a
// shared machine the least noisy measure of what a hook costs.
// KUMOGO_BENCH_MODES (a comma-separated list) runs only those modes;
// KUMOGO_BENCH_BASE=REV also builds kumogo at git revision REV and runs
// every mode with both binaries, one after the other, so that the change
// is compared with its base in the same run. The medians of each mode and
// the ratios hook/no hook are printed at the end.
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
	if m := os.Getenv("KUMOGO_BENCH_MODES"); m != "" {
		modes = strings.Split(m, ",")
	}
	bins := []string{""} // "" is this tree's kumogo
	binPath := map[string]string{"": kumogoBin}
	if rev := os.Getenv("KUMOGO_BENCH_BASE"); rev != "" {
		binPath["base"] = buildKumogoAt(t, rev)
		bins = append(bins, "base")
	}
	rate := map[string][]float64{}    // messages/s: reception (sink) or delivered (relay)
	records := map[string][]float64{} // records/s through the hook
	cpu := map[string][]float64{}     // daemon CPU ms per 1,000 messages
	key := func(bin, mode string) string {
		if bin == "" {
			return mode
		}
		return bin + ":" + mode
	}
	for rep := range reps {
		order := append(slices.Clone(modes[rep%len(modes):]), modes[:rep%len(modes)]...)
		for _, mode := range order {
			for i := range bins {
				bin := bins[(i+rep)%len(bins)]
				k := key(bin, mode)
				r, rec, c := benchHookRun(t, binPath[bin], mode, n)
				rate[k] = append(rate[k], r)
				cpu[k] = append(cpu[k], c)
				if rec > 0 {
					records[k] = append(records[k], rec)
				}
				line := fmt.Sprintf("rep=%d mode=%-19s msgs/s=%7.0f cpu_ms_per_1k=%6.0f", rep+1, k, r, c)
				if rec > 0 {
					line += fmt.Sprintf(" records/s=%7.0f", rec)
				}
				t.Log(line)
			}
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
	for _, bin := range bins {
		for _, mode := range modes {
			k := key(bin, mode)
			line := fmt.Sprintf("median mode=%-19s msgs/s=%s cpu_ms_per_1k=%s", k, spread(rate[k]), spread(cpu[k]))
			if len(records[k]) > 0 {
				line += " records/s=" + spread(records[k])
			}
			t.Log(line)
		}
	}
	for _, bin := range bins {
		for _, p := range [][2]string{{"sink/unbatched", "sink/none"}, {"sink/batched", "sink/none"}, {"relay/batched", "relay/none"}} {
			a, b := key(bin, p[0]), key(bin, p[1])
			if len(rate[a]) == 0 || len(rate[b]) == 0 {
				continue
			}
			// per repetition, the pair ran in the same repetition
			var ratios, extra []float64
			for i := range rate[a] {
				ratios = append(ratios, rate[a][i]/rate[b][i])
				extra = append(extra, cpu[a][i]-cpu[b][i])
			}
			t.Logf("ratio %s/%s: median %.2f (per repetition %s); daemon CPU per message +%.0f µs (median; %s)",
				a, b, med(ratios), fmtList(ratios), med(extra), fmtList(extra))
		}
	}
}

// buildKumogoAt builds kumogo at git revision rev (a temporary worktree)
// and returns the binary's path.
func buildKumogoAt(t *testing.T, rev string) string {
	t.Helper()
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	if out, err := exec.Command("git", "worktree", "add", "--detach", "-q", tree, rev).CombinedOutput(); err != nil {
		t.Fatalf("git worktree add %s: %v\n%s", rev, err, out)
	}
	t.Cleanup(func() { exec.Command("git", "worktree", "remove", "--force", tree).Run() })
	bin := filepath.Join(dir, "kumogo")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/kumogo")
	cmd.Dir = tree
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building kumogo at %s: %v\n%s", rev, err, out)
	}
	return bin
}

func fmtList(xs []float64) string {
	var s []string
	for _, x := range xs {
		s = append(s, fmt.Sprintf("%.2f", x))
	}
	return strings.Join(s, ", ")
}

// benchHookRun runs one mode of TestLogHookThroughput with the kumogo
// binary bin and returns the message rate, the hook's record rate (0
// without a hook) and the daemon's CPU milliseconds per 1,000 messages.
func benchHookRun(t *testing.T, bin, mode string, n int) (float64, float64, float64) {
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
	d := startDaemonBin(t, bin, nil, nil, args...)
	defer d.stop(t, syscall.SIGTERM)
	if profDir != "" {
		stop := benchProfile(t, pprofAddr, filepath.Join(profDir, strings.ReplaceAll(mode, "/", "-")+".pprof"))
		defer stop()
	}
	start := time.Now()
	ticks := cpuTicks(d.cmd.Process.Pid)
	self := selfCPU()
	cpuPer1k := func() float64 {
		// the test process (SMTP clients and the webhook receiver), to
		// see that the receiver is not what limits the hook
		t.Logf("%s: test process CPU %.0f ms per 1,000 messages", mode, (selfCPU()-self).Seconds()*1000*1000/float64(n))
		return float64(cpuTicks(d.cmd.Process.Pid)-ticks) * 10 * 1000 / float64(n) // 100 ticks/s
	}
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
		return msgRate, 0, cpuPer1k()
	}
	want := map[string]int{"Reception": n}
	total := n
	if scenario == "relay" {
		want["Delivery"] = n
		total = 2 * n
	}
	recv.waitCounts(t, want, 5*time.Minute, d)
	return msgRate, float64(total) / time.Since(start).Seconds(), cpuPer1k()
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

// selfCPU is the test process's user and system CPU time so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
