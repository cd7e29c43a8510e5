package testutil

import (
	"bytes"
	"net"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"
)

// loopbackDaemon is a server program a test runs on a free 127.0.0.1
// port (haproxy, redis-server): started with its generated configuration,
// waited for until it answers, its output kept, stopped when the test
// ends.
type loopbackDaemon struct {
	Addr string

	mu     sync.Mutex
	cmd    *exec.Cmd
	output bytes.Buffer
}

// freeLoopbackAddr is a 127.0.0.1 address with a port free right now.
func freeLoopbackAddr(tb testing.TB) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// start runs bin with args and waits (at most 10 s) until ready reports
// true; nil ready waits for d.Addr to accept connections. tb fails with
// the program's output when it does not get ready.
func (d *loopbackDaemon) start(tb testing.TB, ready func() bool, bin string, args ...string) {
	tb.Helper()
	if ready == nil {
		ready = func() bool {
			c, err := net.DialTimeout("tcp", d.Addr, time.Second)
			if err == nil {
				c.Close()
			}
			return err == nil
		}
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout = &lockedWriter{mu: &d.mu, b: &d.output}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	d.mu.Lock()
	d.cmd = cmd
	d.mu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for !ready() {
		if time.Now().After(deadline) {
			tb.Fatalf("%s on %s did not get ready within 10 s\n%s", bin, d.Addr, d.Output())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Output is what the program printed on stdout and stderr.
func (d *loopbackDaemon) Output() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.output.String()
}

// Stop stops the program (SIGTERM, then SIGKILL after 5 s); safe to call
// when it is not running.
func (d *loopbackDaemon) Stop() {
	d.mu.Lock()
	cmd := d.cmd
	d.cmd = nil
	d.mu.Unlock()
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
