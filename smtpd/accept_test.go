package smtpd

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// TestHelperLowFDLimit is not a test: TestAcceptAtFDLimit runs it in a
// child process, where it lowers RLIMIT_NOFILE, serves a listener and
// prints its address.
func TestHelperLowFDLimit(t *testing.T) {
	if os.Getenv("KUMOGO_FD_HELPER") != "1" {
		t.Skip("helper process of TestAcceptAtFDLimit")
	}
	srv, err := New(testConfig(), Deps{Policy: nullPolicy(), Log: zerolog.New(os.Stderr)})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	lim := syscall.Rlimit{Cur: 40, Max: 40}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	fmt.Printf("addr %s\n", srv.Addr())
	go srv.Serve()
	time.Sleep(20 * time.Second) // the parent kills us first
}

// TestAcceptAtFDLimit: with the listener's process at its fd limit, a new
// client gets 421 at once instead of waiting in the backlog, the accept
// errors are logged, and once descriptors are free again clients are
// served.
func TestAcceptAtFDLimit(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperLowFDLimit$")
	cmd.Env = append(os.Environ(), "KUMOGO_FD_HELPER=1")
	var stderr syncBuffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	r := bufio.NewReader(out)
	var addr string
	for addr == "" {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("helper: %v\n%s", err, stderr.String())
		}
		if i := strings.Index(line, "addr "); i >= 0 {
			addr = strings.TrimSpace(line[i+5:])
		}
	}
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	greeted, refused := 0, 0
	for i := 0; i < 60; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		switch {
		case strings.HasPrefix(line, "220 "):
			greeted++
		case line == "421 4.3.2 mx.test too many concurrent sessions. Try later\r\n":
			refused++
		default:
			t.Fatalf("client %d (after %d greeted, %d refused): %q %v\n%s", i, greeted, refused, line, err, stderr.String())
		}
	}
	if refused == 0 || greeted == 0 {
		t.Fatalf("%d greeted, %d refused: the fd limit was not reached", greeted, refused)
	}
	if !strings.Contains(stderr.String(), "accept failed") || !strings.Contains(stderr.String(), "too many open files") {
		t.Fatalf("accept errors not logged:\n%s", stderr.String())
	}
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	// descriptors come back as the server sees the hang-ups
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		line, _ := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if strings.HasPrefix(line, "220 ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no 220 after the clients left: %q", line)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// syncBuffer is a bytes.Buffer a child process may write while the test
// reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
