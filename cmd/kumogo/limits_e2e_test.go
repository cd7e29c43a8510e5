package main

import (
	"errors"
	"fmt"
	"net/smtp"
	"net/textproto"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/kumogo/kumogo/internal/testutil"
)

// hostileHandlers are selected by the MAIL FROM local part.
const hostileHandlers = `
local hostile = {
  concat = function() local s = 'x' while true do s = s .. s end end,
  concat3 = function() local s = 'xyz' while true do s = s .. s .. s end end,
  rep = function() local t = {} for i = 1, 1e9 do t[i] = string.rep('x', 1e6) end end,
  array = function() local t = {} local i = 0 while true do i = i + 1 t[i] = i end end,
  hash = function() local t = {} local i = 0 while true do i = i + 1 t['k' .. i] = i end end,
  gsub = function() local s = string.rep('ab', 2e6) local t = {} for i = 1, 1e9 do t[i] = s:gsub('a', 'cc') end end,
  swallow = function() pcall(function() local s = 'x' while true do s = s .. s end end) end,
  find = function() local s = string.rep('a', 30000) return s:find('.-.-.-.-b') end,
  loop = function() while true do end end,
}
kumo.on('smtp_server_mail_from', function(sender)
  local h = hostile[sender.user]
  if h then h() end
end)
kumo.on('smtp_server_message_received', function(msg)
  msg:set_meta('queue', 'null')
end)
`

var memoryBombs = []string{"concat", "concat3", "rep", "array", "hash", "gsub", "swallow"}

// luaLimitMiB is the per-state limit the test daemon runs with.
const luaLimitMiB = 32

// rssBound is what the daemon may reach while every memory bomb runs at
// once: each state is stopped at its limit plus the walk's slack (1/8),
// and until Go's collector runs (GOGC=100) its garbage can double that;
// the daemon itself starts at about 30 MB. Without the limit the first
// bomb alone passes this bound within a second.
func rssBound(bombs int) int64 {
	per := int64(luaLimitMiB<<20) * 9 / 8 * 2
	return 64<<20 + int64(bombs)*per
}

func rssOf(pid int) int64 {
	kb, _ := strconv.ParseInt(strings.TrimSuffix(procStatus(pid, "VmRSS"), " kB"), 10, 64)
	return kb << 10
}

// cpuTicks is the process's user+system time in clock ticks.
func cpuTicks(pid int) int64 {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	k, _ := strconv.ParseInt(f[12], 10, 64)
	return u + k
}

// hostileSession runs one session whose MAIL FROM starts the hostile
// handler kind and returns the reply to MAIL FROM (an error when there was
// none). leave closes the connection right after sending MAIL FROM.
func hostileSession(addr, kind string, leave bool) (int, string, error) {
	c, err := textproto.Dial("tcp", addr)
	if err != nil {
		return 0, "", err
	}
	defer c.Close()
	if _, _, err := c.ReadResponse(220); err != nil {
		return 0, "", err
	}
	if err := c.PrintfLine("EHLO hostile.example"); err != nil {
		return 0, "", err
	}
	if _, _, err := c.ReadResponse(250); err != nil {
		return 0, "", err
	}
	if err := c.PrintfLine("MAIL FROM:<%s@x.example>", kind); err != nil {
		return 0, "", err
	}
	if leave {
		return 0, "", nil
	}
	code, msg, err := c.ReadResponse(250)
	var perr *textproto.Error
	if errors.As(err, &perr) {
		return perr.Code, perr.Msg, nil
	}
	return code, msg, err
}

// sendOne delivers one message through a fresh session.
func sendOne(addr string, i int) error {
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Hello("client.example"); err != nil {
		return err
	}
	if err := c.Mail("fine@x.example"); err != nil {
		return err
	}
	if err := c.Rcpt("r@y.example"); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "Subject: ordinary %d\r\n\r\nhello\r\n", i)
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}

// TestHostilePoliciesThroughDaemon: every hostile handler at once, while
// ordinary clients on the same daemon keep getting 250s. Each hostile
// session gets 421 4.3.0 technical difficulties, RSS stays under
// rssBound, a CPU-bound pattern whose client left stops burning CPU at its
// deadline, and a shutdown during one completes without "listener
// shutdown incomplete".
func TestHostilePoliciesThroughDaemon(t *testing.T) {
	dir := t.TempDir()
	policy := spooledPolicy(t, dir, `
  kumo.start_esmtp_listener { listen = '127.0.0.1:0', hostname = 'e2e.test', data_processing_timeout = '3s' }
  kumo.start_esmtp_listener { listen = '127.0.0.1:0', hostname = 'e2e.test', data_processing_timeout = '60s' }`,
		hostileHandlers)
	d := startDaemon(t, nil, "--policy", policy, "--lua-memory-limit", strconv.Itoa(luaLimitMiB)+"MiB")
	pid := d.cmd.Process.Pid
	bound := rssBound(len(memoryBombs))
	// The first listener (3 s deadline) serves the CPU-bound handlers and
	// the ordinary clients; the memory bombs go to the second (60 s), so
	// that on a loaded machine they meet their memory limit rather than
	// their deadline.
	listeners := regexp.MustCompile(`smtp listener on (\S+)`).FindAllStringSubmatch(d.log(), -1)
	if len(listeners) != 2 {
		t.Fatalf("want two listeners:\n%s", d.log())
	}
	bombAddr := listeners[1][1]

	// RSS sampler: records the peak, and kills the daemon past the bound
	// so that a regression cannot take the machine's memory.
	var peak atomic.Int64
	stopSampler := make(chan struct{})
	samplerDone := make(chan struct{})
	go func() {
		defer close(samplerDone)
		for {
			if r := rssOf(pid); r > peak.Load() {
				peak.Store(r)
				if r > bound {
					d.cmd.Process.Kill()
					return
				}
			}
			select {
			case <-stopSampler:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()

	// ordinary clients, one message per session, until the hostile ones
	// are done (bounded: at most 60 s)
	var okCount atomic.Int64
	okErrs := make(chan error, 100)
	stopOK := make(chan struct{})
	okDone := make(chan struct{})
	go func() {
		defer close(okDone)
		deadline := time.Now().Add(60 * time.Second)
		for i := 0; time.Now().Before(deadline); i++ {
			select {
			case <-stopOK:
				return
			default:
			}
			if err := sendOne(d.addr, i); err != nil {
				okErrs <- fmt.Errorf("ordinary message %d: %w", i, err)
				return
			}
			okCount.Add(1)
		}
	}()

	type result struct {
		kind string
		code int
		msg  string
		err  error
		took time.Duration
	}
	results := make(chan result, 32)
	var wg sync.WaitGroup
	kinds := append(append([]string{}, memoryBombs...), "find", "loop")
	for _, kind := range kinds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			addr := bombAddr
			if kind == "find" || kind == "loop" {
				addr = d.addr
			}
			code, msg, err := hostileSession(addr, kind, false)
			results <- result{kind, code, msg, err, time.Since(start)}
		}()
	}
	// a client that starts a CPU-bound pattern and leaves at once
	cpuBefore := cpuTicks(pid)
	if _, _, err := hostileSession(d.addr, "find", true); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(results)
	for r := range results {
		if r.err != nil || r.code != 421 || r.msg != "4.3.0 e2e.test technical difficulties" {
			t.Errorf("%s: %d %q %v, want 421 4.3.0 e2e.test technical difficulties", r.kind, r.code, r.msg, r.err)
		}
		t.Logf("%s: %d %s after %v", r.kind, r.code, r.msg, r.took.Round(time.Millisecond))
	}
	// the abandoned pattern and the hostile sessions are past their 3 s
	// deadline by now (the CPU-bound sessions took 3 s): over the next
	// second the daemon is idle apart from the ordinary clients
	close(stopOK)
	<-okDone
	time.Sleep(300 * time.Millisecond)
	idleStart := cpuTicks(pid)
	time.Sleep(time.Second)
	idleTicks := cpuTicks(pid) - idleStart
	close(stopSampler)
	<-samplerDone
	close(okErrs)
	for err := range okErrs {
		t.Error(err)
	}
	if n := okCount.Load(); n < 5 {
		t.Errorf("only %d ordinary messages got their 250 while the hostile handlers ran", n)
	}
	t.Logf("ordinary messages accepted meanwhile: %d; peak RSS %d MiB (bound %d MiB); CPU %d ticks during the run, %d in the idle second",
		okCount.Load(), peak.Load()>>20, bound>>20, cpuTicks(pid)-cpuBefore, idleTicks)
	if peak.Load() > bound {
		t.Fatalf("peak RSS %d MiB is over the bound of %d MiB", peak.Load()>>20, bound>>20)
	}
	if idleTicks > 20 { // 0.2 s of CPU at 100 ticks/s
		t.Errorf("the daemon used %d ticks of CPU in the second after every hostile event's deadline", idleTicks)
	}

	// a shutdown while a CPU-bound pattern runs: the event ends at its
	// deadline, well inside the 25 s shutdown bound
	pending := make(chan result, 1)
	go func() {
		code, msg, err := hostileSession(d.addr, "find", false)
		pending <- result{"find", code, msg, err, 0}
	}()
	time.Sleep(300 * time.Millisecond)
	if took := d.stop(t, syscall.SIGTERM); took > 10*time.Second {
		t.Errorf("shutdown took %v", took)
	}
	if r := <-pending; r.code != 421 {
		t.Errorf("session during shutdown: %d %q %v", r.code, r.msg, r.err)
	}
	if strings.Contains(d.log(), "listener shutdown incomplete") {
		t.Errorf("shutdown incomplete:\n%s", tail(d.log(), 2000))
	}
	if got := strings.Count(d.log(), "not enough memory"); got < len(memoryBombs) {
		t.Errorf("%d 'not enough memory' errors logged, want %d:\n%s", got, len(memoryBombs), tail(d.log(), 3000))
	}
}

// TestMemoryGuardShedsLoad: above the process memory limit (set here with
// KumoMTA's kumo.set_memory_soft_limit far below what the daemon uses)
// new sessions are refused with a 421 and the liveness check fails.
func TestMemoryGuardShedsLoad(t *testing.T) {
	dir := t.TempDir()
	policy := spooledPolicy(t, dir, `
  kumo.start_esmtp_listener { listen = '127.0.0.1:0', hostname = 'mem.test' }
  kumo.start_http_listener { listen = '127.0.0.1:0' }`, `
kumo.on('pre_init', function()
  kumo.set_memory_soft_limit(1024 * 1024)
  assert(kumo.get_memory_soft_limit() == 1024 * 1024)
  assert(kumo.get_memory_hard_limit() > 1024 * 1024)
end)
kumo.on('smtp_server_message_received', function(msg) msg:set_meta('queue', 'null') end)
`)
	d := startDaemon(t, nil, "--policy", policy)
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(d.log(), "memory over limit") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	c := testutil.Dial(t, d.addr)
	c.Expect(t, "421 4.3.2 mem.test load shedding. Try later")
	if code, body := d.liveness(t); code != 503 || body != "load shedding" {
		t.Fatalf("liveness over the memory limit: %d %q", code, body)
	}
	if !strings.Contains(d.log(), "memory over limit: shedding load") {
		t.Fatalf("no shedding log line:\n%s", d.log())
	}
	d.stop(t, syscall.SIGINT)
}
