package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestLogHookThroughput measures records per second through a webhook log
// hook (policy-extras.log_hooks new_json), unbatched and batched, and the
// reception rate of the same load without a hook. It runs only with
// KUMOGO_BENCH_LOGHOOK=N (messages per run); see BENCHMARKS.md.
func TestLogHookThroughput(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("KUMOGO_BENCH_LOGHOOK"))
	if n <= 0 {
		t.Skip("set KUMOGO_BENCH_LOGHOOK=N to measure")
	}
	const sessions = 4
	for _, mode := range []string{"none", "unbatched", "batched"} {
		dir := t.TempDir()
		recv := newWebhookReceiver()
		addr := freeLoopbackAddr(t)
		recv.serve(t, addr)
		hook := ""
		switch mode {
		case "unbatched":
			hook = `log_hooks:new_json { name = 'webhook', url = 'http://` + addr + `/log' }`
		case "batched":
			hook = `log_hooks:new_json { name = 'webhook', url = 'http://` + addr + `/log', batch_size = 100, min_batch_size = 100, max_batch_latency = '100ms' }`
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
kumo.on('smtp_server_message_received', function(msg) msg:set_meta('queue', 'null') end)
`
		if err := os.WriteFile(policy, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		d := startDaemon(t, nil, "--policy", policy)
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
		sent := time.Since(start)
		line := fmt.Sprintf("%-9s reception %6.0f msgs/s", mode, float64(n)/sent.Seconds())
		if mode != "none" {
			recv.waitCounts(t, map[string]int{"Reception": n}, 5*time.Minute, d)
			all := time.Since(start)
			recv.mu.Lock()
			reqs := recv.requests
			recv.mu.Unlock()
			line += fmt.Sprintf(", webhook %6.0f records/s (%d records in %d requests, %v)", float64(n)/all.Seconds(), n, reqs, all.Round(time.Millisecond))
		}
		t.Log(line)
		d.stop(t, syscall.SIGTERM)
	}
}
