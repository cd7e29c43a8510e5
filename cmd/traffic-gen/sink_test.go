package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
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
)

// kumogoBin is the daemon built once for the sink tests.
var kumogoBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "traffic-gen-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	kumogoBin = filepath.Join(dir, "kumogo")
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

var buildOnce struct {
	sync.Once
	err error
	out []byte
}

// buildKumogo builds the daemon the first time a test needs it.
func buildKumogo(t *testing.T) {
	t.Helper()
	buildOnce.Do(func() {
		cmd := exec.Command("go", "build", "-o", kumogoBin, "github.com/kumogo/kumogo/cmd/kumogo")
		buildOnce.out, buildOnce.err = cmd.CombinedOutput()
	})
	if buildOnce.err != nil {
		t.Fatalf("building kumogo: %v\n%s", buildOnce.err, buildOnce.out)
	}
}

// sink is a running `kumogo --policy sink.lua`.
type sink struct {
	cmd      *exec.Cmd
	addr     string
	httpAddr string
	logDir   string
	done     chan error
	mu       sync.Mutex
	stderr   bytes.Buffer
}

func (s *sink) log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stderr.String()
}

// startSink runs the kumogo sink on a free loopback port and waits for it
// to be ready.
func startSink(t *testing.T) *sink {
	t.Helper()
	buildKumogo(t)
	dir := t.TempDir()
	s := &sink{logDir: filepath.Join(dir, "logs"), done: make(chan error, 1)}
	s.cmd = exec.Command(kumogoBin, "--policy", "sink.lua")
	s.cmd.Dir = dir
	s.cmd.Env = append(os.Environ(),
		"KUMOGO_SINK_LISTEN=127.0.0.1:0",
		"KUMOGO_SINK_DIR="+filepath.Join(dir, "spool"),
		"KUMOGO_SINK_LOG_DIR="+s.logDir,
		"KUMOGO_SINK_HOSTNAME=sink.test",
		"KUMOGO_SINK_HTTP=127.0.0.1:0",
	)
	pipe, err := s.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if s.cmd.ProcessState == nil {
			s.cmd.Process.Kill()
			<-s.done
		}
	})
	ready := make(chan string, 1)
	listenRe := regexp.MustCompile(`smtp listener on (\S+)`)
	httpRe := regexp.MustCompile(`http listener on (\S+)`)
	go func() {
		sc := bufio.NewScanner(pipe)
		addr := ""
		for sc.Scan() {
			line := sc.Text()
			s.mu.Lock()
			s.stderr.WriteString(line + "\n")
			s.mu.Unlock()
			if m := listenRe.FindStringSubmatch(line); m != nil && addr == "" {
				addr = m[1]
			}
			if m := httpRe.FindStringSubmatch(line); m != nil {
				s.mu.Lock()
				s.httpAddr = m[1]
				s.mu.Unlock()
			}
			if strings.Contains(line, "initialization complete") {
				select {
				case ready <- addr:
				default:
				}
			}
		}
		s.done <- s.cmd.Wait()
	}()
	select {
	case s.addr = <-ready:
	case err := <-s.done:
		s.done <- err
		t.Fatalf("kumogo exited early: %v\n%s", err, s.log())
	case <-time.After(30 * time.Second):
		t.Fatalf("kumogo did not start:\n%s", s.log())
	}
	if s.addr == "" {
		t.Fatalf("no listener address:\n%s", s.log())
	}
	return s
}

// stop ends the sink with SIGINT and returns its Reception records.
func (s *sink) stop(t *testing.T) []logrecord.Record {
	t.Helper()
	s.cmd.Process.Signal(syscall.SIGINT)
	select {
	case err := <-s.done:
		if err != nil {
			t.Fatalf("kumogo exit: %v\n%s", err, s.log())
		}
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		t.Fatalf("kumogo did not stop")
	}
	recs, err := logrecord.ReadDir(s.logDir)
	if err != nil {
		t.Fatal(err)
	}
	var out []logrecord.Record
	for _, r := range recs {
		if r.Type == logrecord.Reception {
			out = append(out, r)
		}
	}
	return out
}

// tgResult is one in-process traffic-gen run.
type tgResult struct {
	code           int
	stdout, stderr string
	summary        jsonSummary
}

// runTG runs traffic-gen with args (plus --json) and a hard time bound.
func runTG(t *testing.T, args ...string) tgResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := run(ctx, append(args, "--json"), &stdout, &stderr)
	r := tgResult{code: code, stdout: stdout.String(), stderr: stderr.String()}
	if code != 2 {
		if err := json.Unmarshal(stdout.Bytes(), &r.summary); err != nil {
			t.Fatalf("--json output %q: %v\nstderr:\n%s", stdout.String(), err, r.stderr)
		}
	}
	return r
}

func TestSinkMessageCountExact(t *testing.T) {
	cases := []struct {
		name string
		args []string
		n    int
	}{
		{"data", []string{"--concurrency", "20"}, 1000},
		{"data-100kb", []string{"--concurrency", "8", "--body-size", "100kb"}, 300},
		{"bdat", []string{"--concurrency", "20", "--bdat"}, 1000},
		{"bdat-100kb", []string{"--concurrency", "8", "--bdat", "--body-size", "100kb"}, 300},
		{"starttls", []string{"--concurrency", "4", "--starttls"}, 100},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := startSink(t)
			args := append([]string{"--target", s.addr, "--message-count", fmt.Sprint(c.n), "--duration", "30"}, c.args...)
			r := runTG(t, args...)
			recs := s.stop(t)
			if r.code != 0 {
				t.Fatalf("exit %d\n%s", r.code, r.stderr)
			}
			if r.summary.Sent != uint64(c.n) || r.summary.Failed != 0 {
				t.Errorf("summary sent=%d failed=%d, want %d and 0", r.summary.Sent, r.summary.Failed, c.n)
			}
			if len(recs) != c.n {
				t.Fatalf("%d Reception records, want exactly %d", len(recs), c.n)
			}
			minSize := int64(1024)
			if strings.Contains(c.name, "100kb") {
				minSize = 100_000
			}
			for _, rec := range recs[:5] {
				if rec.Size < minSize || rec.Size > minSize+2000 {
					t.Errorf("message size %d, want a little over %d", rec.Size, minSize)
				}
				if !strings.HasPrefix(rec.Sender, "noreply@") || !strings.HasSuffix(rec.Sender, ".mx-sink.wezfurlong.org") {
					t.Errorf("sender %q", rec.Sender)
				}
				if len(rec.Recipient) != 1 || !regexp.MustCompile(`^user-\d+@[a-z]+\.com\.mx-sink\.wezfurlong\.org$`).MatchString(rec.Recipient[0]) {
					t.Errorf("recipient %q", rec.Recipient)
				}
			}
			if c.name == "starttls" && recs[0].TLSProtocolVersion == "" {
				t.Errorf("no TLS recorded: %+v", recs[0])
			}
			for _, want := range []string{"sent " + groupThousands(uint64(c.n)) + " messages, failed 0 over ", "transaction latency: avg=", " p99.9=", "overall rate: "} {
				if !strings.Contains(r.stderr, want) {
					t.Errorf("report lacks %q:\n%s", want, r.stderr)
				}
			}
		})
	}
}

func TestSinkThrottle(t *testing.T) {
	s := startSink(t)
	start := time.Now()
	r := runTG(t, "--target", s.addr, "--throttle", "50/s", "--duration", "2", "--concurrency", "10")
	took := time.Since(start)
	recs := s.stop(t)
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	// a burst of 50, then 50 a second for the remaining 2 s
	sent := int(r.summary.Sent)
	if sent < 120 || sent > 152 {
		t.Errorf("sent %d in 2 s at 50/s (burst 50), want 120..152", sent)
	}
	if len(recs) != sent {
		t.Errorf("%d Reception records, summary says %d", len(recs), sent)
	}
	if took < 2*time.Second || took > 5*time.Second {
		t.Errorf("run took %v for --duration 2", took)
	}
}

func TestSinkDurationEndsRun(t *testing.T) {
	s := startSink(t)
	start := time.Now()
	// far more messages than 2 s allow at this size: the deadline wins
	r := runTG(t, "--target", s.addr, "--duration", "2", "--concurrency", "4", "--message-count", "100000000", "--body-size", "10kb")
	took := time.Since(start)
	recs := s.stop(t)
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	if took < 2*time.Second || took > 5*time.Second {
		t.Errorf("--duration 2 took %v", took)
	}
	if r.summary.Sent == 0 || int(r.summary.Sent) != len(recs) {
		t.Errorf("sent %d, %d records", r.summary.Sent, len(recs))
	}
	progressRe := regexp.MustCompile(`\rcurrent rate: [\d,]+ msgs/s, [\d,]+ msgs/minute, [\d,]+ msgs/hour \(sent=[\d,]+, clients=\d+\)`)
	if !progressRe.MatchString(r.stderr) {
		t.Errorf("no progress line:\n%q", r.stderr)
	}
	var raw map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"sent", "failed", "elapsed_secs", "rate_per_sec", "rate_per_minute", "rate_per_hour", "latency_ms"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("--json lacks %q: %s", k, r.stdout)
		}
	}
	lat, _ := raw["latency_ms"].(map[string]any)
	for _, k := range []string{"avg", "min", "max", "p50", "p75", "p90", "p95", "p99", "p99.9"} {
		if v, ok := lat[k].(float64); !ok || v <= 0 {
			t.Errorf("latency_ms[%q] = %v", k, lat[k])
		}
	}
}

// TestHTTPInjection: --http sends the same generated messages through
// POST /api/inject/v1, with batches of recipients.
func TestHTTPInjection(t *testing.T) {
	for _, c := range []struct {
		name string
		args []string
		n    int
	}{
		{"one-per-request", []string{"--concurrency", "8"}, 300},
		{"batches", []string{"--concurrency", "4", "--http-batch-size", "7", "--body-size", "10kb"}, 300},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := startSink(t)
			s.mu.Lock()
			target := s.httpAddr
			s.mu.Unlock()
			if target == "" {
				t.Fatalf("no http listener:\n%s", s.log())
			}
			args := append([]string{"--http", "--target", target, "--message-count", fmt.Sprint(c.n), "--duration", "30"}, c.args...)
			r := runTG(t, args...)
			recs := s.stop(t)
			if r.code != 0 || r.summary.Sent != uint64(c.n) || r.summary.Failed != 0 {
				t.Fatalf("exit %d sent=%d failed=%d\n%s", r.code, r.summary.Sent, r.summary.Failed, r.stderr)
			}
			if len(recs) != c.n {
				t.Fatalf("%d Reception records, want exactly %d", len(recs), c.n)
			}
			for _, rec := range recs[:3] {
				if rec.ReceptionProtocol != "HTTP" || !strings.HasPrefix(rec.Sender, "noreply@") || len(rec.Recipient) != 1 ||
					!regexp.MustCompile(`^user-\d+@[a-z]+\.com\.mx-sink\.wezfurlong\.org$`).MatchString(rec.Recipient[0]) {
					t.Errorf("record %+v", rec)
				}
			}
		})
	}
}
