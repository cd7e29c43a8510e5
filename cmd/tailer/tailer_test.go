package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// startSink runs the real kumogo binary with the bundled sink policy,
// logging into logDir with 1 s segments, and returns its SMTP address.
func startSink(t *testing.T, logDir string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "kumogo")
	if out, err := exec.Command("go", "build", "-o", bin, "../kumogo").CombinedOutput(); err != nil {
		t.Fatalf("building kumogo: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "--policy", "sink.lua")
	cmd.Env = append(os.Environ(), "KUMOGO_SINK_LISTEN=127.0.0.1:0", "KUMOGO_SINK_DIR="+t.TempDir(),
		"KUMOGO_SINK_LOG_DIR="+logDir, "KUMOGO_SINK_HOSTNAME=sink.test")
	pipe, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	addr := make(chan string, 1)
	go func() {
		re := regexp.MustCompile(`smtp listener on (\S+)$`)
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
		}
	}()
	select {
	case a := <-addr:
		return a
	case <-time.After(20 * time.Second):
		t.Fatal("kumogo did not start")
	}
	return ""
}

func send(t *testing.T, addr string, rcpts ...string) {
	t.Helper()
	for _, r := range rcpts {
		c, err := smtp.Dial(addr)
		if err != nil {
			t.Fatal(err)
		}
		// plain SMTP (SendMail would insist on verifying the self-signed
		// STARTTLS certificate)
		if err := c.Mail("a@example.com"); err != nil {
			t.Fatal(err)
		}
		if err := c.Rcpt(r); err != nil {
			t.Fatal(err)
		}
		w, err := c.Data()
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(w, "Subject: t\r\n\r\nhello "+r+"\r\n")
		if err := w.Close(); err != nil {
			t.Fatalf("send %s: %v", r, err)
		}
		c.Quit()
	}
}

// lineCollector gathers the tailer's output lines.
type lineCollector struct {
	mu    sync.Mutex
	lines []string
}

func (c *lineCollector) collect(r io.Reader) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		c.mu.Lock()
		c.lines = append(c.lines, sc.Text())
		c.mu.Unlock()
	}
}

func (c *lineCollector) recipients(t *testing.T) map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int{}
	for _, l := range c.lines {
		var r struct {
			Type      string `json:"type"`
			Recipient any    `json:"recipient"`
		}
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("tailer printed a line that is not JSON: %q", l)
		}
		if r.Type == "Reception" {
			out[fmt.Sprint(r.Recipient)]++
		}
	}
	return out
}

// startTailer runs the tailer in process until the returned stop is
// called.
func startTailer(t *testing.T, args ...string) (*lineCollector, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	c := &lineCollector{}
	done := make(chan int, 1)
	go c.collect(pr)
	go func() {
		done <- run(ctx, args, pw, io.Discard)
		pw.Close()
	}()
	return c, func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("tailer exit %d", code)
		}
	}
}

func await(t *testing.T, c *lineCollector, want []string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := c.recipients(t)
		missing := 0
		for _, w := range want {
			if got[w] == 0 {
				missing++
			}
		}
		if missing == 0 {
			for r, n := range got {
				if n != 1 {
					t.Fatalf("%s printed %d times", r, n)
				}
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %v not printed within %v; got %v", missing, want, timeout, got)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestTailerFollowsDaemonAcrossRotation(t *testing.T) {
	logDir := filepath.Join(t.TempDir(), "logs")
	addr := startSink(t, logDir)
	c, stop := startTailer(t, "--batch-latency", "200ms", "--batch-size", "2", logDir)
	var first []string
	for round := 0; round < 3; round++ {
		var batch []string
		for i := 0; i < 3; i++ {
			batch = append(batch, fmt.Sprintf("r%d-%d@example.net", round, i))
		}
		send(t, addr, batch...)
		first = append(first, batch...)
		time.Sleep(1200 * time.Millisecond) // past max_segment_duration: a new segment
	}
	await(t, c, first, 20*time.Second)
	stop()
	segs, _ := filepath.Glob(filepath.Join(logDir, "2*"))
	if len(segs) < 2 {
		t.Fatalf("only %d segments: the test did not cross a rotation", len(segs))
	}

	// a new tailer with the same checkpoint prints only what came later
	send(t, addr, "later@example.net")
	c2, stop2 := startTailer(t, "--batch-latency", "200ms", logDir)
	await(t, c2, []string{"later@example.net"}, 20*time.Second)
	stop2()
	if got := c2.recipients(t); len(got) != 1 {
		t.Fatalf("restarted tailer printed %v, want only the later message", got)
	}

	// --summary --once with another checkpoint counts everything so far
	var out strings.Builder
	if code := run(context.Background(), []string{"--summary", "--once", "--checkpoint", filepath.Join(t.TempDir(), "cp"), logDir}, &out, io.Discard); code != 0 {
		t.Fatalf("summary exit %d", code)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if last := lines[len(lines)-1]; !strings.Contains(last, "total=10 Reception=10") {
		t.Fatalf("summary %q", last)
	}
}
