package testutil

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// HAProxy is a haproxy (Debian's package, installed by
// scripts/install-test-deps.sh) on a free 127.0.0.1 port, configured as the
// forward proxy of KumoMTA's "Routing Messages Via Proxy Servers" page: it
// reads a PROXY protocol header, then connects to the header's destination
// from the header's source address (`usesrc clientip`, which needs root or
// CAP_NET_ADMIN). It is stopped when the test ends.
type HAProxy struct {
	Addr string

	mu     sync.Mutex
	cmd    *exec.Cmd
	output bytes.Buffer
}

// StartHAProxy starts haproxy for tb; tb fails when haproxy is missing or
// cannot start.
func StartHAProxy(tb testing.TB) *HAProxy {
	tb.Helper()
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/haproxy"); serr != nil {
			tb.Fatal("haproxy is not installed: run scripts/install-test-deps.sh")
		}
		bin = "/usr/sbin/haproxy"
	}
	if os.Geteuid() != 0 {
		tb.Fatal("haproxy's `usesrc clientip` needs root: run the proxy tests as root")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	dir := tb.TempDir()
	cfg := filepath.Join(dir, "haproxy.cfg")
	conf := fmt.Sprintf(`global
    log stderr format raw local0 info
    maxconn 256

defaults
    log global
    timeout connect 5s
    timeout client 30s
    timeout server 30s

listen outboundsmtp
    bind %s accept-proxy
    mode tcp
    use-server v4 if { src 0.0.0.0/0 }
    use-server v6 if { src ::/0 }
    server v4 0.0.0.0 source 0.0.0.0 usesrc clientip
    server v6 ::: source ::: usesrc clientip
`, addr)
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		tb.Fatal(err)
	}
	h := &HAProxy{Addr: addr}
	check := exec.Command(bin, "-c", "-f", cfg)
	if out, err := check.CombinedOutput(); err != nil {
		tb.Fatalf("haproxy -c: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "-db", "-f", cfg)
	cmd.Stdout = &lockedWriter{mu: &h.mu, b: &h.output}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	h.cmd = cmd
	tb.Cleanup(h.Stop)
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			tb.Fatalf("haproxy on %s did not start: %v\n%s", addr, err, h.Output())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return h
}

// Output is what haproxy printed (its log goes to stderr).
func (h *HAProxy) Output() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.output.String()
}

// Stop stops haproxy (SIGTERM, then SIGKILL after 5 s); safe to call twice.
func (h *HAProxy) Stop() {
	h.mu.Lock()
	cmd := h.cmd
	h.cmd = nil
	h.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		cmd.Process.Kill()
		<-done
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}
