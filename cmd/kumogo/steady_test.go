package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// goroutinesOf reads the goroutine count from a daemon's pprof endpoint.
func goroutinesOf(t *testing.T, pprofAddr string) int {
	t.Helper()
	resp, err := http.Get("http://" + pprofAddr + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	m := regexp.MustCompile(`goroutine profile: total (\d+)`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("no goroutine count in %q", b[:min(len(b), 200)])
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

func median(v []int) int {
	s := append([]int(nil), v...)
	sort.Ints(s)
	return s[len(s)/2]
}

// TestSteadyLoadNoGrowth is the CI version of bench/soak.sh: the relay
// takes and delivers mail from clients that keep reconnecting, with log
// segments rotating every second, for each spool kind. Under the same
// load, the goroutines and open files at the end are no more than at the
// start (medians of 5 one-second samples, with a small allowance for
// connections in flight): anything held per message, per connection or
// per segment would show as growth. About 25 s per spool kind.
func TestSteadyLoadNoGrowth(t *testing.T) {
	for _, kind := range []string{"RocksDB", "LocalDisk"} {
		t.Run(kind, func(t *testing.T) { testSteadyLoad(t, kind) })
	}
}

func testSteadyLoad(t *testing.T, kind string) {
	sinkEnvs, _ := sinkEnv(t)
	sink := startDaemon(t, sinkEnvs, "--policy", "sink.lua")
	dir := t.TempDir()
	policy := spooledPolicy(t, dir, `
  kumo.configure_local_logs { log_dir = '`+dir+`/logs', max_segment_duration = '1s' }
  kumo.start_esmtp_listener { listen = '127.0.0.1:0', hostname = 'steady.test' }`, `
kumo.on('smtp_server_message_received', function(msg) msg:set_meta('queue', '[127.0.0.1]:`+portOf(sink.addr)+`') end)
kumo.on('get_egress_path_config', function()
  return kumo.make_egress_path { enable_tls = 'Disabled', prohibited_hosts = {}, idle_timeout = '2s' }
end)
`)
	if kind == "RocksDB" {
		b, _ := os.ReadFile(policy)
		b = regexp.MustCompile(`(path = '[^']+/(data|meta)')`).ReplaceAll(b, []byte("$1, kind = 'RocksDB'"))
		os.WriteFile(policy, b, 0o644)
	}
	pprofAddr := freeLoopbackAddr(t)
	relay := startDaemon(t, nil, "--policy", policy, "--pprof", pprofAddr)
	pid := relay.cmd.Process.Pid
	fds := func() int {
		e, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		if err != nil {
			t.Fatal(err)
		}
		return len(e)
	}

	// 8 clients, each sending 10 messages per connection, about 40
	// messages a second in all; bounded by time and by count
	ctx, cancel := context.WithTimeout(context.Background(), 24*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	var mu sync.Mutex
	sent, failed := 0, 0
	body := benchBody(4 * 1024)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for c := 0; c < 1000 && ctx.Err() == nil; c++ {
				lc, err := dialLoad(relay.addr)
				if err != nil {
					mu.Lock()
					failed++
					mu.Unlock()
					time.Sleep(100 * time.Millisecond)
					continue
				}
				for i := 0; i < 10 && ctx.Err() == nil; i++ {
					err := lc.sendTo(fmt.Sprintf("w%d-c%d-m%d@example.com", w, c, i), body)
					mu.Lock()
					if err != nil {
						failed++
					} else {
						sent++
					}
					mu.Unlock()
					if err != nil {
						break
					}
					time.Sleep(200 * time.Millisecond)
				}
				lc.c.Close()
			}
		}(w)
	}
	sample := func() (g, f []int) {
		for i := 0; i < 5; i++ {
			g = append(g, goroutinesOf(t, pprofAddr))
			f = append(f, fds())
			time.Sleep(time.Second)
		}
		return g, f
	}
	time.Sleep(6 * time.Second) // warm up: pools, dispatchers, segments
	g0, f0 := sample()
	time.Sleep(8 * time.Second)
	g1, f1 := sample()
	cancel()
	wg.Wait()
	mu.Lock()
	t.Logf("%s: %d sent, %d failed; goroutines %v → %v, open files %v → %v", kind, sent, failed, g0, g1, f0, f1)
	if sent < 300 || failed > 0 {
		t.Fatalf("load: %d sent, %d failed", sent, failed)
	}
	mu.Unlock()
	const allowance = 12 // connections and deliveries in flight at a sample
	if median(g1) > median(g0)+allowance {
		t.Errorf("goroutines grew under a steady load: %v then %v", g0, g1)
	}
	if median(f1) > median(f0)+allowance {
		t.Errorf("open files grew under a steady load: %v then %v", f0, f1)
	}
	relay.stop(t, syscall.SIGINT)
	sink.stop(t, syscall.SIGINT)
}

func portOf(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}
