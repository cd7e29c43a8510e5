package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kumogo/kumogo/internal/logrecord"
	"github.com/kumogo/kumogo/internal/testutil"
)

var kumogoBin string

func TestMain(m *testing.M) {
	if hold := os.Getenv("KUMOGO_E2E_HOLD"); hold != "" {
		addr, n, _ := strings.Cut(hold, ",")
		var count int
		fmt.Sscan(n, &count)
		holdConnections(addr, count)
		os.Exit(0)
	}
	dir, err := os.MkdirTemp("", "kumogo-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	kumogoBin = filepath.Join(dir, "kumogo")
	out, err := exec.Command("go", "build", "-o", kumogoBin, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building kumogo: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// daemonProc is a running kumogo process.
type daemonProc struct {
	cmd    *exec.Cmd
	addr   string
	mu     sync.Mutex
	stderr strings.Builder
	done   chan error
}

func (d *daemonProc) log() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stderr.String()
}

// startDaemon runs kumogo with args and env, and waits for
// "initialization complete", returning the SMTP listener address.
func startDaemon(t *testing.T, env []string, args ...string) *daemonProc {
	t.Helper()
	return startDaemonVia(t, nil, env, args...)
}

// startDaemonVia is startDaemon with kumogo started through a wrapper
// command (prlimit, for example); the wrapper must exec kumogo.
func startDaemonVia(t *testing.T, wrapper []string, env []string, args ...string) *daemonProc {
	t.Helper()
	return startDaemonBin(t, kumogoBin, wrapper, env, args...)
}

// startDaemonBin is startDaemonVia with the kumogo binary bin (a
// benchmark's build of another commit).
func startDaemonBin(t *testing.T, bin string, wrapper []string, env []string, args ...string) *daemonProc {
	t.Helper()
	argv := append(append(append([]string(nil), wrapper...), bin), args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Dir = t.TempDir()
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &daemonProc{cmd: cmd, done: make(chan error, 1)}
	ready := make(chan struct{})
	listenRe := regexp.MustCompile(`smtp listener on (\S+)$`)
	go func() {
		sc := bufio.NewScanner(pipe)
		sc.Buffer(make([]byte, 64*1024), 1<<20)
		once := sync.Once{}
		for sc.Scan() {
			line := sc.Text()
			d.mu.Lock()
			d.stderr.WriteString(line + "\n")
			if m := listenRe.FindStringSubmatch(line); m != nil && d.addr == "" {
				d.addr = m[1]
			}
			d.mu.Unlock()
			if strings.Contains(line, "initialization complete") {
				once.Do(func() { close(ready) })
			}
		}
		d.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
		}
	})
	select {
	case <-ready:
	case err := <-d.done:
		t.Fatalf("kumogo exited before initialization: %v\n%s", err, d.log())
	case <-time.After(20 * time.Second):
		t.Fatalf("kumogo did not initialize:\n%s", d.log())
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.addr == "" {
		t.Fatalf("no listener line:\n%s", d.stderr.String())
	}
	return d
}

// liveness asks the daemon's HTTP listener (from its "http listener on"
// line) for /api/check-liveness/v1.
func (d *daemonProc) liveness(t *testing.T) (int, string) {
	t.Helper()
	m := regexp.MustCompile(`http listener on (\S+)`).FindStringSubmatch(d.log())
	if m == nil {
		t.Fatalf("no http listener line:\n%s", d.log())
	}
	resp, err := http.Get("http://" + m[1] + "/api/check-liveness/v1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// freeLoopbackAddr returns a 127.0.0.1 address with a port nobody listens
// on (for a peer that is started later).
func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// stop sends sig and waits for a clean exit.
func (d *daemonProc) stop(t *testing.T, sig os.Signal) time.Duration {
	t.Helper()
	start := time.Now()
	d.cmd.Process.Signal(sig)
	select {
	case err := <-d.done:
		if err != nil {
			t.Fatalf("kumogo exit: %v\n%s", err, d.log())
		}
	case <-time.After(30 * time.Second):
		d.cmd.Process.Kill()
		t.Fatalf("kumogo did not exit within 30 s")
	}
	return time.Since(start)
}

func sinkEnv(t *testing.T) (env []string, logDir string) {
	dir := t.TempDir()
	logDir = filepath.Join(dir, "logs")
	return []string{
		"KUMOGO_SINK_LISTEN=127.0.0.1:0",
		"KUMOGO_SINK_DIR=" + filepath.Join(dir, "spool"),
		"KUMOGO_SINK_LOG_DIR=" + logDir,
		"KUMOGO_SINK_HOSTNAME=sink.test",
	}, logDir
}

func countTypes(recs []logrecord.Record) map[string]int {
	out := map[string]int{}
	for _, r := range recs {
		out[r.Type.String()]++
	}
	return out
}

const pyClient = `
import smtplib, ssl, sys
host, port = sys.argv[1].rsplit(':', 1)
s = smtplib.SMTP(host, int(port), local_hostname='py.example', timeout=20)
code, banner = s.ehlo()
assert code == 250, (code, banner)
lines = banner.decode().split('\n')
assert lines[0] == 'sink.test Aloha py.example', lines
assert 'PIPELINING' in lines and 'STARTTLS' in lines, lines
assert s.noop() == (250, b'the goggles do nothing')
msg = 'From: a@example.com\r\nTo: b@example.com\r\nSubject: Hello! This is a test\r\nX-Test1: Test1\r\n\r\nbody line\r\n.leading dot\r\n'
refused = s.sendmail('sender@example.com', ['recip@example.com'], msg)
assert refused == {}, refused
# two recipients: two messages, two ids
code, resp = s.docmd('MAIL FROM:<sender@example.com>')
assert (code, resp) == (250, b'OK sender@example.com'), (code, resp)
assert s.docmd('RCPT TO:<r1@example.com>') == (250, b'OK r1@example.com')
assert s.docmd('RCPT TO:<r2@example.org>') == (250, b'OK r2@example.org')
code, resp = s.data(msg)
assert code == 250 and resp.startswith(b'OK ids=') and len(resp.split()) == 3, resp
code, resp = s.docmd('VRFY x')
assert (code, resp) == (502, b'5.5.1 Command unimplemented'), (code, resp)
s.starttls(context=ssl._create_unverified_context())
s.ehlo('py.example')
assert 'auth' in s.esmtp_features and s.esmtp_features['auth'].strip() == 'PLAIN', s.esmtp_features
refused = s.sendmail('', ['tls@example.com'], msg)
assert refused == {}, refused
code, resp = s.quit()
assert (code, resp) == (221, b'So long, and thanks for all the fish!'), (code, resp)
print('python ok')
`

func TestSinkWithPythonSmtplib(t *testing.T) {
	env, logDir := sinkEnv(t)
	d := startDaemon(t, env, "--policy", "sink.lua")
	out, err := exec.Command("python3", "-c", pyClient, d.addr).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "python ok") {
		t.Fatalf("python client: %v\n%s\n%s", err, out, d.log())
	}
	d.stop(t, syscall.SIGINT)
	recs, err := logrecord.ReadDir(logDir)
	if err != nil {
		t.Fatal(err)
	}
	if c := countTypes(recs); c["Reception"] != 4 || c["Rejection"] != 1 || len(c) != 2 {
		t.Fatalf("record counts %v", c)
	}
	var tlsSeen bool
	for _, r := range recs {
		if r.Type == logrecord.Reception {
			if r.Queue != "null" || r.Response.Code != 250 || r.PeerAddress == nil || r.PeerAddress.Name != "py.example" || r.NodeID == "" {
				t.Fatalf("reception record %+v", r)
			}
			if r.TLSCipher != "" {
				tlsSeen = true
				if len(r.Recipient) != 1 || r.Recipient[0] != "tls@example.com" || r.Sender != "" {
					t.Fatalf("tls reception %+v", r)
				}
			}
		}
		if r.Type == logrecord.Rejection && (r.Response.Code != 502 || r.Response.Command != "VRFY x\r\n") {
			t.Fatalf("rejection record %+v", r)
		}
	}
	if !tlsSeen {
		t.Fatal("no Reception record carries TLS details")
	}
	// every segment is sealed read-only after a clean stop
	entries, _ := os.ReadDir(logDir)
	for _, e := range entries {
		info, _ := e.Info()
		if info.Mode().Perm()&0o222 != 0 {
			t.Fatalf("segment %s still writable after shutdown", e.Name())
		}
	}
}

func TestSinkWithSmtpSource(t *testing.T) {
	src, err := exec.LookPath("smtp-source")
	if err != nil {
		t.Fatalf("smtp-source is required (scripts/install-test-deps.sh installs postfix): %v", err)
	}
	env, logDir := sinkEnv(t)
	d := startDaemon(t, env, "--policy", "sink.lua")
	const n = 300
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, src, "-c", "-m", fmt.Sprint(n), "-s", "10", "-l", "20480",
		"-f", "from@example.com", "-t", "to@example.net", d.addr).CombinedOutput()
	if err != nil {
		t.Fatalf("smtp-source: %v\n%s", err, out)
	}
	d.stop(t, syscall.SIGTERM)
	recs, err := logrecord.ReadDir(logDir)
	if err != nil {
		t.Fatal(err)
	}
	c := countTypes(recs)
	if c["Reception"] != n || c["Rejection"] != 0 {
		t.Fatalf("want %d Reception records, got %v\n%s", n, c, d.log())
	}
	for _, r := range recs {
		if r.Size < 20480 || r.Sender != "from@example.com" || r.Recipient[0] != "to@example.net" {
			t.Fatalf("record %+v", r)
		}
	}
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	write := func(name, src string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	run := func(args ...string) (int, string) {
		cmd := exec.Command(kumogoBin, args...)
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), string(out)
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0, string(out)
	}
	if code, out := run("--validate", "--policy", "sink.lua"); code != 0 {
		t.Fatalf("bundled sink.lua must validate: %d %s", code, out)
	}
	good := write("good.lua", "local kumo = require 'kumo'\nkumo.on('init', function()\n  kumo.start_esmtp_listener { listen = '127.0.0.1:1' }\nend)\n")
	if code, out := run("--validate", "--policy", good); code != 0 {
		t.Fatalf("good policy: %d %s", code, out)
	}
	syntax := write("syntax.lua", "local kumo = require 'kumo'\n\nkumo.on('init', function(\n  end end\n")
	if code, out := run("--validate", "--policy", syntax); code == 0 || !strings.Contains(out, "syntax.lua:4") {
		t.Fatalf("syntax error must fail naming syntax.lua:4: %d %s", code, out)
	}
	bad := write("bad.lua", "local kumo = require 'kumo'\nkumo.on('init', function()\n  local x = nil\n  x.field = 1\nend)\n")
	if code, out := run("--validate", "--policy", bad); code == 0 || !strings.Contains(out, "bad.lua:4") {
		t.Fatalf("runtime error must fail naming bad.lua:4: %d %s", code, out)
	}
	if code, out := run("--policy", bad); code == 0 || !strings.Contains(out, "bad.lua:4") {
		t.Fatalf("daemon start with a broken init must fail naming bad.lua:4: %d %s", code, out)
	}
	unknown := write("unknown.lua", "local kumo = require 'kumo'\nkumo.on('init', function()\n  kumo.start_esmtp_listener { listen = '127.0.0.1:0', bogus = 1 }\nend)\n")
	if code, out := run("--validate", "--policy", unknown); code == 0 || !strings.Contains(out, "unknown field `bogus`") {
		t.Fatalf("unknown listener option: %d %s", code, out)
	}
	nospool := write("nospool.lua", "local kumo = require 'kumo'\nkumo.on('init', function()\n  kumo.start_esmtp_listener { listen = '127.0.0.1:0' }\nend)\n")
	if code, out := run("--policy", nospool); code == 0 || !strings.Contains(out, "No spools have been defined") {
		t.Fatalf("no spools: %d %s", code, out)
	}
	if code, out := run("--policy", filepath.Join(dir, "missing.lua")); code == 0 || !strings.Contains(out, "no such file") {
		t.Fatalf("missing policy: %d %s", code, out)
	}
	if code, out := run("--version"); code != 0 || !strings.HasPrefix(out, "kumogo ") {
		t.Fatalf("--version: %d %s", code, out)
	}
}

func TestHandlerErrorEndsOnlyThatSession(t *testing.T) {
	dir := t.TempDir()
	policy := filepath.Join(dir, "policy.lua")
	src := `local kumo = require 'kumo'
kumo.on('init', function()
  kumo.define_spool { name = 'data', path = '` + dir + `/data' }
  kumo.define_spool { name = 'meta', path = '` + dir + `/meta' }
  kumo.start_esmtp_listener { listen = '127.0.0.1:0', hostname = 'e2e.test' }
end)
kumo.on('smtp_server_mail_from', function(sender)
  if sender.user == 'boom' then
    local t = nil
    return t.nope
  end
  if sender.user == 'deny' then
    kumo.reject(550, '5.7.1 sender ' .. tostring(sender) .. ' denied')
  end
end)
kumo.on('smtp_server_message_received', function(msg)
  msg:set_meta('queue', 'null')
end)
`
	os.WriteFile(policy, []byte(src), 0o644)
	d := startDaemon(t, nil, "--policy", policy)
	c := testutil.Dial(t, d.addr)
	c.Expect(t, "220 e2e.test KumoMTA")
	c.Cmd(t, "EHLO x.example", "250-e2e.test Aloha x.example")
	c.Cmd(t, "MAIL FROM:<deny@x.com>", "550 5.7.1 sender deny@x.com denied")
	c.Cmd(t, "MAIL FROM:<boom@x.com>", "421 4.3.0 e2e.test technical difficulties")
	if _, _, err := c.ReadReply(); err == nil {
		t.Fatal("session must end after a handler error")
	}
	c2 := testutil.Dial(t, d.addr)
	c2.Expect(t, "220 e2e.test")
	c2.Cmd(t, "EHLO x.example", "250-")
	c2.Cmd(t, "MAIL FROM:<fine@x.com>", "250 OK fine@x.com")
	c2.Cmd(t, "RCPT TO:<r@y.com>", "250 OK r@y.com")
	c2.Cmd(t, "DATA", "354")
	c2.SendRaw("hi\r\n.\r\n")
	c2.Expect(t, "250 OK ids=")
	if !strings.Contains(d.log(), "policy.lua:10") {
		t.Fatalf("the error log should name policy.lua:10:\n%s", d.log())
	}
	d.stop(t, syscall.SIGINT)
}

func TestGracefulShutdownFinishesTransaction(t *testing.T) {
	env, logDir := sinkEnv(t)
	d := startDaemon(t, env, "--policy", "sink.lua")
	busy := testutil.Dial(t, d.addr)
	busy.Expect(t, "220")
	busy.Cmd(t, "EHLO x.example", "250-")
	busy.Cmd(t, "MAIL FROM:<a@x.com>", "250")
	busy.Cmd(t, "RCPT TO:<b@y.com>", "250")
	busy.Cmd(t, "DATA", "354")
	busy.SendRaw("Subject: in flight\r\n\r\nfirst half\r\n")
	idle := testutil.Dial(t, d.addr)
	idle.Expect(t, "220")
	idle.Cmd(t, "EHLO y.example", "250-")

	start := time.Now()
	d.cmd.Process.Signal(syscall.SIGTERM)
	idle.Expect(t, "421 4.3.2 sink.test shutting down")
	time.Sleep(200 * time.Millisecond)
	busy.SendRaw("second half\r\n.\r\n")
	busy.Expect(t, "250 OK ids=")
	busy.Expect(t, "421 4.3.2 sink.test shutting down")
	select {
	case err := <-d.done:
		if err != nil {
			t.Fatalf("exit: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no exit within 30 s")
	}
	if el := time.Since(start); el > 30*time.Second {
		t.Fatalf("shutdown took %v", el)
	}
	if _, err := net.DialTimeout("tcp", d.addr, time.Second); err == nil {
		t.Fatal("still accepting after exit")
	}
	recs, err := logrecord.ReadDir(logDir)
	if err != nil || countTypes(recs)["Reception"] != 1 {
		t.Fatalf("the in-flight message must be logged: %v %v", err, countTypes(recs))
	}
}

func procStatus(pid int, key string) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, key+":") {
			return strings.TrimSpace(strings.TrimPrefix(l, key+":"))
		}
	}
	return ""
}

func countFDs(pid int) int {
	e, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(e)
}

// holdConnections is the body of a helper process: it opens n connections
// to addr, reads each banner, prints how many were greeted, then keeps them
// open until its stdin closes. Each process has its own open-file limit, so
// two helpers can hold 20,000 client sockets between them.
func holdConnections(addr string, n int) {
	conns := make([]net.Conn, 0, n)
	greeted := 0
	buf := make([]byte, 128)
	for i := 0; i < n; i++ {
		c, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			fmt.Printf("dial error after %d: %v\n", i, err)
			break
		}
		conns = append(conns, c)
		if len(conns)%250 == 0 || i == n-1 {
			start := len(conns) - 250
			if i == n-1 {
				start = greeted
			}
			for _, cc := range conns[start:] {
				cc.SetReadDeadline(time.Now().Add(3 * time.Second))
				m, err := io.ReadAtLeast(cc, buf, 5)
				if err == nil && strings.HasPrefix(string(buf[:m]), "220 ") {
					greeted++
				}
			}
		}
	}
	fmt.Printf("greeted %d of %d\n", greeted, n)
	io.Copy(io.Discard, os.Stdin)
	for _, c := range conns {
		c.Close()
	}
}

func TestTwentyThousandIdleConnections(t *testing.T) {
	const perHelper, helpers = 10000, 2
	var rl syscall.Rlimit
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl)
	env, _ := sinkEnv(t)
	d := startDaemon(t, env, "--policy", "sink.lua")
	pid := d.cmd.Process.Pid
	baseFDs := countFDs(pid)
	// The daemon's own descriptors (listener, log, epoll, stdio) count
	// against the same limit as its sessions.
	capacity := int(rl.Max) - baseFDs
	var greeted int
	var stdins []io.WriteCloser
	var cmds []*exec.Cmd
	for i := 0; i < helpers; i++ {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), fmt.Sprintf("KUMOGO_E2E_HOLD=%s,%d", d.addr, perHelper))
		in, _ := cmd.StdinPipe()
		out, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		stdins = append(stdins, in)
		cmds = append(cmds, cmd)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			var g, n int
			if _, err := fmt.Sscanf(line, "greeted %d of %d", &g, &n); err == nil {
				greeted += g
				break
			}
			t.Logf("holder: %s", line)
		}
	}
	rss := procStatus(pid, "VmRSS")
	fds := countFDs(pid)
	t.Logf("kumogo holding %d idle sessions (%d client sockets, fd limit %d): VmRSS %s, threads %s",
		fds-baseFDs, helpers*perHelper, rl.Max, rss, procStatus(pid, "Threads"))
	want := helpers * perHelper
	if capacity < want {
		want = capacity
	}
	if greeted < want-10 {
		t.Fatalf("only %d sessions greeted, expected about %d\n%s", greeted, want, tail(d.log(), 20))
	}
	if d.cmd.ProcessState != nil {
		t.Fatal("daemon died")
	}
	for i := range cmds {
		stdins[i].Close()
		cmds[i].Wait()
	}
	deadline := time.Now().Add(30 * time.Second)
	for countFDs(pid) > baseFDs+5 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if got := countFDs(pid); got > baseFDs+5 {
		t.Fatalf("daemon still holds %d fds after clients left (baseline %d)", got, baseFDs)
	}
	// still serving
	c := testutil.Dial(t, d.addr)
	c.Expect(t, "220 sink.test")
	c.Cmd(t, "EHLO x", "250-")
	c.Cmd(t, "MAIL FROM:<a@x.com>", "250")
	c.Cmd(t, "RCPT TO:<b@y.com>", "250")
	c.Cmd(t, "DATA", "354")
	c.SendRaw("hi\r\n.\r\n")
	c.Expect(t, "250 OK ids=")
	c.Close()
	d.stop(t, syscall.SIGINT)
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// kumoStyleSink is a policy shaped like KumoMTA's own sink (KumoMTA docs:
// "Configuring KumoMTA as a sink"; policies/sink.lua): accounting, an open ESMTP listener, an HTTP listener with
// trusted hosts, spools, and both reception handlers.
const kumoStyleSink = `local kumo = require 'kumo'
local TMP = os.getenv('SINK_TMP')
kumo.on('init', function()
  kumo.configure_accounting_db_path(TMP .. '/accounting.db')
  kumo.start_esmtp_listener {
    listen = '127.0.0.1:0',
    relay_hosts = { '0.0.0.0/0' },
  }
  kumo.start_http_listener {
    listen = '127.0.0.1:0',
    trusted_hosts = { '127.0.0.1', '::1', '192.168.1.0/24' },
  }
  kumo.define_spool {
    name = 'data',
    path = TMP .. '/kumo-sink/data',
  }
  kumo.define_spool {
    name = 'meta',
    path = TMP .. '/kumo-sink/meta',
  }
end)
kumo.on('smtp_server_message_received', function(msg)
  msg:set_meta('queue', 'null')
end)
kumo.on('http_message_generated', function(msg)
  msg:set_meta('queue', 'null')
end)
`

func TestKumoMTAStyleSinkPolicyLoads(t *testing.T) {
	dir := t.TempDir()
	policy := filepath.Join(dir, "sink.lua")
	os.WriteFile(policy, []byte(kumoStyleSink), 0o644)
	env := []string{"SINK_TMP=" + dir}
	cmd := exec.Command(kumogoBin, "--validate", "--policy", policy)
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("validate: %v\n%s", err, out)
	}
	d := startDaemon(t, env, "--policy", policy)
	for _, want := range []string{"configure_accounting_db_path", "start_http_listener"} {
		if strings.Contains(d.log(), want) {
			t.Fatalf("%s is provided now, and needs no note:\n%s", want, d.log())
		}
	}
	if code, body := d.liveness(t); code != 200 || body != "OK" {
		t.Fatalf("liveness: %d %q", code, body)
	}
	c := testutil.Dial(t, d.addr)
	c.Expect(t, "220 ")
	c.Cmd(t, "EHLO x.example", "250-")
	c.Cmd(t, "MAIL FROM:<a@x.com>", "250")
	c.Cmd(t, "RCPT TO:<b@y.com>", "250")
	c.Cmd(t, "DATA", "354")
	c.SendRaw("hi\r\n.\r\n")
	c.Expect(t, "250 OK ids=")
	d.stop(t, syscall.SIGINT)
	// the accounting database is served: the reception is counted
	out, err := exec.Command("sqlite3", filepath.Join(dir, "accounting.db"), "SELECT received, delivered FROM accounting").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "1|0" {
		t.Fatalf("accounting database: %v %q", err, out)
	}
}

func TestUserDropsPrivileges(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("privilege drop needs root") // CI runs as root
	}
	// The spool is opened after the drop, so it must belong to the user.
	dir, err := os.MkdirTemp("", "kumogo-user")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	spoolDir := filepath.Join(dir, "spool")
	os.Mkdir(spoolDir, 0o755)
	if err := os.Chown(spoolDir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	env := []string{"KUMOGO_SINK_LISTEN=127.0.0.1:0", "KUMOGO_SINK_DIR=" + spoolDir, "KUMOGO_SINK_HOSTNAME=sink.test"}
	d := startDaemon(t, env, "--policy", "sink.lua", "--user", "nobody")
	uid := procStatus(d.cmd.Process.Pid, "Uid")
	if f := strings.Fields(uid); len(f) < 2 || f[0] != "65534" || f[1] != "65534" {
		t.Fatalf("Uid after --user nobody: %q", uid)
	}
	c := testutil.Dial(t, d.addr)
	c.Expect(t, "220 sink.test")
	d.stop(t, syscall.SIGTERM)
}

// spooledPolicy writes a policy into dir: init defines the data and meta
// spools in dir, then runs initBody; handlers follows init. It returns the
// policy's path.
func spooledPolicy(t *testing.T, dir, initBody, handlers string) string {
	t.Helper()
	p := filepath.Join(dir, "policy.lua")
	src := `local kumo = require 'kumo'
kumo.on('init', function()
  kumo.define_spool { name = 'data', path = '` + dir + `/data' }
  kumo.define_spool { name = 'meta', path = '` + dir + `/meta' }
` + initBody + `
end)
` + handlers
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestProxyProtocolFromPolicy: require_proxy_protocol set in a policy makes
// the daemon read a PROXY header; the proxied peer address reaches the
// policy's conn_meta and decides relaying.
func TestProxyProtocolFromPolicy(t *testing.T) {
	policy := spooledPolicy(t, t.TempDir(), `
  kumo.start_esmtp_listener {
    listen = '127.0.0.1:0', hostname = 'proxied.test',
    require_proxy_protocol = true, relay_hosts = { '203.0.113.0/24' },
  }`, `
kumo.on('smtp_server_connection_accepted', function(conn_meta)
  kumo.log_info('peer ' .. conn_meta:get_meta('received_from') .. ' via ' .. conn_meta:get_meta('orig_received_from'))
end)
kumo.on('smtp_server_message_received', function(msg) msg:set_meta('queue', 'null') end)
`)
	d := startDaemon(t, nil, "--policy", policy)
	if strings.Contains(d.log(), "require_proxy_protocol") {
		t.Fatalf("require_proxy_protocol logged as not implemented:\n%s", d.log())
	}
	c := testutil.Dial(t, d.addr)
	c.SendRaw("PROXY TCP4 203.0.113.7 198.51.100.1 40000 25\r\n")
	c.Expect(t, "220 proxied.test")
	c.Cmd(t, "EHLO x.example", "250-")
	c.Cmd(t, "MAIL FROM:<a@x.com>", "250")
	c.Cmd(t, "RCPT TO:<b@y.com>", "250") // relayed: 203.0.113.7 is in relay_hosts, 127.0.0.1 is not
	c.Cmd(t, "QUIT", "221")
	if !regexp.MustCompile(`peer 203\.0\.113\.7:40000 via 127\.0\.0\.1:\d+`).MatchString(d.log()) {
		t.Fatalf("conn_meta did not show the proxied peer:\n%s", d.log())
	}
	d.stop(t, syscall.SIGINT)
}

// TestPeerAndViaBlocks: peer and via blocks from a Lua policy apply by the
// client's and the local address; XCLIENT allowed for loopback only.
func TestPeerAndViaBlocks(t *testing.T) {
	policy := spooledPolicy(t, t.TempDir(), `
  kumo.start_esmtp_listener {
    listen = '127.0.0.1:0', hostname = 'base.test', relay_hosts = { '203.0.113.0/24' },
    peer = { ['127.0.0.0/8'] = { banner = 'trusted proxy', allow_xclient = true } },
    via = { ['192.0.2.25'] = { hostname = 'brand.test' } },
  }`, `
kumo.on('smtp_server_message_received', function(msg) msg:set_meta('queue', 'null') end)
`)
	d := startDaemon(t, nil, "--policy", policy)
	if strings.Contains(d.log(), "not implemented") {
		t.Fatalf("peer/via logged as not implemented:\n%s", d.log())
	}
	c := testutil.Dial(t, d.addr)
	c.Expect(t, "220 base.test trusted proxy")
	c.Cmd(t, "EHLO proxy.example", "250-base.test Aloha proxy.example")
	c.Cmd(t, "XCLIENT ADDR=203.0.113.9 DESTADDR=192.0.2.25", "220 brand.test KumoMTA")
	c.Cmd(t, "EHLO client.example", "250-brand.test Aloha client.example")
	c.Cmd(t, "XCLIENT ADDR=127.0.0.1", "550 insufficient authorization")
	c.Cmd(t, "MAIL FROM:<a@x.com>", "250")
	c.Cmd(t, "RCPT TO:<b@y.com>", "250")
	c.Cmd(t, "QUIT", "221")
	d.stop(t, syscall.SIGINT)
}
