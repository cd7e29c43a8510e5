package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
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
)

var bins struct {
	once         sync.Once
	kumogo, kcli string
	err          error
	out          []byte
}

func build(t *testing.T) {
	t.Helper()
	bins.once.Do(func() {
		dir, err := os.MkdirTemp("", "kcli-test")
		if err != nil {
			bins.err = err
			return
		}
		bins.kumogo, bins.kcli = filepath.Join(dir, "kumogo"), filepath.Join(dir, "kcli")
		bins.out, bins.err = exec.Command("go", "build", "-o", bins.kumogo, "../kumogo").CombinedOutput()
		if bins.err == nil {
			bins.out, bins.err = exec.Command("go", "build", "-o", bins.kcli, ".").CombinedOutput()
		}
	})
	if bins.err != nil {
		t.Fatalf("build: %v\n%s", bins.err, bins.out)
	}
}

type daemon struct {
	cmd        *exec.Cmd
	mu         sync.Mutex
	log        strings.Builder
	smtp, http string
}

func (d *daemon) logText() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.log.String()
}

// startDaemon runs kumogo with a bundled policy and env, waiting for its
// listeners.
func startDaemon(t *testing.T, policy string, env ...string) *daemon {
	t.Helper()
	build(t)
	d := &daemon{cmd: exec.Command(bins.kumogo, "--policy", policy)}
	d.cmd.Env = append(os.Environ(), env...)
	pipe, _ := d.cmd.StderrPipe()
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		d.cmd.Process.Signal(syscall.SIGTERM)
		d.cmd.Wait()
	})
	ready := make(chan struct{})
	go func() {
		smtpRe, httpRe := regexp.MustCompile(`smtp listener on (\S+)$`), regexp.MustCompile(`http listener on (\S+)$`)
		sc := bufio.NewScanner(pipe)
		once := sync.Once{}
		for sc.Scan() {
			line := sc.Text()
			d.mu.Lock()
			d.log.WriteString(line + "\n")
			if m := smtpRe.FindStringSubmatch(line); m != nil {
				d.smtp = m[1]
			}
			if m := httpRe.FindStringSubmatch(line); m != nil {
				d.http = m[1]
			}
			d.mu.Unlock()
			if strings.Contains(line, "initialization complete") {
				once.Do(func() { close(ready) })
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(20 * time.Second):
		t.Fatalf("kumogo did not start:\n%s", d.logText())
	}
	return d
}

type kcliResult struct {
	code           int
	stdout, stderr string
}

func kcli(t *testing.T, endpoint string, args ...string) kcliResult {
	t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bins.kcli, append([]string{"--endpoint", endpoint}, args...)...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return kcliResult{code, out.String(), errb.String()}
}

func TestKcliAgainstLiveDaemon(t *testing.T) {
	dir := t.TempDir()
	sink := startDaemon(t, "sink.lua", "KUMOGO_SINK_LISTEN=127.0.0.1:0", "KUMOGO_SINK_DIR="+filepath.Join(dir, "sink"))
	relay := startDaemon(t, "route-to-sink.lua", "KUMOGO_RELAY_LISTEN=127.0.0.1:0", "KUMOGO_SINK_HOST="+sink.smtp,
		"KUMOGO_RELAY_DIR="+filepath.Join(dir, "relay"), "KUMOGO_RELAY_HTTP=127.0.0.1:0", "KUMOGO_RELAY_HOSTNAME=relay.test")
	endpoint := "http://" + relay.http

	inject := func(n int) error {
		var rc []string
		for i := 0; i < n; i++ {
			rc = append(rc, fmt.Sprintf(`{"email":"u%d@example.net"}`, i))
		}
		resp, err := http.Post(endpoint+"/api/inject/v1", "application/json",
			strings.NewReader(`{"envelope_sender":"a@example.com","recipients":[`+strings.Join(rc, ",")+`],"content":"Subject: x\r\n\r\nx\r\n"}`))
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("inject: %d", resp.StatusCode)
		}
		return nil
	}
	if err := inject(4); err != nil {
		t.Fatal(err)
	}

	// queue-summary: the ready queue towards the sink with 4 deliveries
	site := sink.smtp
	deadline := time.Now().Add(20 * time.Second)
	for {
		r := kcli(t, endpoint, "queue-summary")
		if r.code != 0 {
			t.Fatalf("queue-summary exit %d: %s", r.code, r.stderr)
		}
		if m := regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(site) + `\s+unspecified\s+smtp_client\s+(\d+)\s`).FindStringSubmatch(r.stdout); m != nil && m[1] == "4" {
			if !strings.Contains(r.stdout, "SCHEDULED QUEUE") {
				t.Fatalf("no scheduled section:\n%s", r.stdout)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue-summary never showed 4 deliveries to %s:\n%s", site, r.stdout)
		}
		time.Sleep(300 * time.Millisecond)
	}

	// set-log-filter changes the daemon's level at once
	if r := kcli(t, endpoint, "set-log-filter", "kumod=debug"); r.code != 0 || strings.TrimSpace(r.stdout) != "OK" {
		t.Fatalf("set-log-filter: %d %q %q", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(relay.logText(), "diagnostic log filter changed") {
		t.Fatalf("daemon log:\n%s", relay.logText())
	}
	if r := kcli(t, endpoint, "set-log-filter", "nonsense"); r.code != 1 || !strings.Contains(r.stderr, "invalid log filter") {
		t.Fatalf("bad filter: %d %q", r.code, r.stderr)
	}

	// readable failures and exit statuses
	if r := kcli(t, endpoint, "bounce", "--reason", "x"); r.code != 2 || !strings.Contains(r.stderr, "--everything") {
		t.Errorf("bounce without a selection: %d %q", r.code, r.stderr)
	}
	if r := kcli(t, endpoint, "bounce-cancel", "--id", "00000000-0000-0000-0000-000000000000"); r.code != 1 || !strings.Contains(r.stderr, "DELETE /api/admin/bounce/v1: 404") {
		t.Errorf("bounce-cancel of an unknown id: %d %q", r.code, r.stderr)
	}
	if r := kcli(t, "http://127.0.0.1:1", "suspend-list"); r.code != 1 || !strings.Contains(r.stderr, "cannot reach http://127.0.0.1:1") {
		t.Errorf("unreachable: %d %q", r.code, r.stderr)
	}
	if r := kcli(t, endpoint, "no-such-command"); r.code != 2 {
		t.Errorf("unknown command: %d", r.code)
	}

	// top under tmux shows live figures
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Fatal("tmux is required: ", err)
	}
	sess := fmt.Sprintf("kcli-top-%d", os.Getpid())
	tm := func(args ...string) string {
		out, err := exec.Command("tmux", append([]string{"-L", sess}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("tmux %v: %v %s", args, err, out)
		}
		return string(out)
	}
	tm("new-session", "-d", "-s", sess, "-x", "200", "-y", "40", bins.kcli, "--endpoint", endpoint, "top", "--interval", "500ms")
	defer exec.Command("tmux", "-L", sess, "kill-server").Run()
	stopInject := make(chan struct{})
	go func() {
		for {
			select {
			case <-stopInject:
				return
			case <-time.After(100 * time.Millisecond):
				inject(2) // errors show as a missing rate
			}
		}
	}()
	defer close(stopInject)
	deadline = time.Now().Add(15 * time.Second)
	rateRe := regexp.MustCompile(`received\s+([0-9.]+)/s`)
	for {
		screen := tm("capture-pane", "-p", "-t", sess)
		if m := rateRe.FindStringSubmatch(screen); m != nil && m[1] != "0.0" && strings.Contains(screen, site) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("top did not show a live rate:\n%s", screen)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// TestKcliInspect: messages that cannot be delivered (nothing listens at
// the sink address) wait in their scheduled queue, where inspect-sched-q
// and inspect-message show them.
func TestKcliInspect(t *testing.T) {
	dir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	relay := startDaemon(t, "route-to-sink.lua", "KUMOGO_RELAY_LISTEN=127.0.0.1:0", "KUMOGO_SINK_HOST="+dead,
		"KUMOGO_RELAY_DIR="+filepath.Join(dir, "relay"), "KUMOGO_RELAY_HTTP=127.0.0.1:0", "KUMOGO_RELAY_HOSTNAME=relay.test")
	endpoint := "http://" + relay.http
	resp, err := http.Post(endpoint+"/api/inject/v1", "application/json", strings.NewReader(
		`{"envelope_sender":"a@example.com","recipients":[{"email":"x@example.net"},{"email":"y@example.net"},{"email":"z@example.net"}],"content":"Subject: wait\r\n\r\nwaiting body\r\n"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	queueName := "[127.0.0.1]:" + strings.Split(dead, ":")[1]
	var sq struct {
		QueueName    string `json:"queue_name"`
		NumScheduled int    `json:"num_scheduled"`
		Messages     []struct {
			ID      string `json:"id"`
			Message struct {
				Sender      string         `json:"sender"`
				Recipient   string         `json:"recipient"`
				Meta        map[string]any `json:"meta"`
				Data        *string        `json:"data"`
				Due         string         `json:"due"`
				NumAttempts int            `json:"num_attempts"`
			} `json:"message"`
		} `json:"messages"`
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		r := kcli(t, endpoint, "inspect-sched-q", "--limit", "2", queueName)
		if r.code != 0 {
			t.Fatalf("inspect-sched-q: %d %s", r.code, r.stderr)
		}
		if err := json.Unmarshal([]byte(r.stdout), &sq); err != nil {
			t.Fatalf("%v: %s", err, r.stdout)
		}
		if sq.NumScheduled == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("scheduled queue never held 3 messages: %s\n%s", r.stdout, relay.logText())
		}
		time.Sleep(300 * time.Millisecond)
	}
	if sq.QueueName != queueName || len(sq.Messages) != 2 || sq.Messages[0].Message.Sender != "a@example.com" ||
		sq.Messages[0].Message.NumAttempts < 1 || sq.Messages[0].Message.Due == "" || sq.Messages[0].Message.Data != nil {
		t.Fatalf("inspect-sched-q %+v", sq)
	}
	id := sq.Messages[0].ID
	r := kcli(t, endpoint, "inspect-message", "--want-body", id)
	var im struct {
		ID      string `json:"id"`
		Message struct {
			Recipient string         `json:"recipient"`
			Meta      map[string]any `json:"meta"`
			Data      string         `json:"data"`
		} `json:"message"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &im); err != nil || r.code != 0 {
		t.Fatalf("inspect-message: %d %v %s %s", r.code, err, r.stdout, r.stderr)
	}
	if im.ID != id || !strings.HasSuffix(im.Message.Recipient, "@example.net") || im.Message.Meta["queue"] != queueName ||
		!strings.Contains(im.Message.Data, "waiting body") {
		t.Fatalf("inspect-message %+v", im)
	}
	if r := kcli(t, endpoint, "inspect-message", "00000000000000000000000000000000"); r.code != 1 || !strings.Contains(r.stderr, "404") {
		t.Fatalf("unknown id: %d %q", r.code, r.stderr)
	}
}
