package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/kumogo/kumogo/internal/logrecord"
)

// concSink answers the first `limited` DATA commands with
// "421 4.7.28 ... rate limited", takes `delay` over every accepted DATA,
// and keeps the largest number of connections it had open at once since
// the last reset.
type concSink struct {
	addr  string
	delay time.Duration

	mu        sync.Mutex
	limited   int
	open, max int
	accepted  int
	got       []rcptAt // accepted recipients, in order
}

// rcptAt is a recipient the sink accepted and when.
type rcptAt struct {
	rcpt string
	at   time.Time
}

func startConcSink(t *testing.T, limited int, delay time.Duration) *concSink {
	t.Helper()
	cs := &concSink{limited: limited, delay: delay}
	srv := gosmtp.NewServer(gosmtp.BackendFunc(func(c *gosmtp.Conn) (gosmtp.Session, error) {
		cs.mu.Lock()
		cs.open++
		cs.max = max(cs.max, cs.open)
		cs.mu.Unlock()
		return &concSession{cs: cs}, nil
	}))
	srv.Domain = "conc.test"
	srv.ReadTimeout = 30 * time.Second
	srv.WriteTimeout = 30 * time.Second
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cs.addr = l.Addr().String()
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return cs
}

// state returns the open connections, the most open at once since the
// last reset, and the messages accepted.
func (cs *concSink) state() (open, most, accepted int) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return cs.open, cs.max, cs.accepted
}

func (cs *concSink) resetMax() {
	cs.mu.Lock()
	cs.max = cs.open
	cs.mu.Unlock()
}

type concSession struct {
	cs    *concSink
	rcpts []string
}

func (s *concSession) Reset() { s.rcpts = nil }
func (s *concSession) Logout() error {
	s.cs.mu.Lock()
	s.cs.open--
	s.cs.mu.Unlock()
	return nil
}
func (s *concSession) Mail(string, *gosmtp.MailOptions) error { return nil }
func (s *concSession) Rcpt(to string, _ *gosmtp.RcptOptions) error {
	s.rcpts = append(s.rcpts, to)
	return nil
}
func (s *concSession) Data(r io.Reader) error {
	if _, err := io.Copy(io.Discard, r); err != nil {
		return err
	}
	s.cs.mu.Lock()
	if s.cs.limited > 0 {
		s.cs.limited--
		s.cs.mu.Unlock()
		return &gosmtp.SMTPError{Code: 421, EnhancedCode: gosmtp.EnhancedCode{4, 7, 28}, Message: "conc.test rate limited, try again later"}
	}
	s.cs.mu.Unlock()
	time.Sleep(s.cs.delay)
	s.cs.mu.Lock()
	s.cs.accepted++
	for _, r := range s.rcpts {
		s.cs.got = append(s.cs.got, rcptAt{r, time.Now()})
	}
	s.cs.mu.Unlock()
	return nil
}

const tsaSetConfigShaping = `["tsa.test"]
mx_rollup = false
prohibited_hosts = []
enable_tls = "Disabled"
connection_limit = 10
idle_timeout = "1s"

[["tsa.test".automation]]
regex = "4\\.7\\.28 .*rate limited"
action = {SetConfig={name="connection_limit", value=1}}
duration = "30s"
`

// TestTSASetConfigAppliedAndReverted: the sink's "421 4.7.28 ... rate
// limited" makes the TSA daemon's SetConfig rule override the egress
// path's connection_limit (10 in the shaping file) with 1 for 30 s. The
// node's config monitor sees the served override change, bumps the
// config epoch, and its ready queue is evaluated again: a burst of
// messages then reaches the sink over one connection at a time. When the
// override expires the node bumps the epoch again and the same burst
// uses several connections.
func TestTSASetConfigAppliedAndReverted(t *testing.T) {
	dir := t.TempDir()
	shapingFile := filepath.Join(dir, "shaping.toml")
	if err := os.WriteFile(shapingFile, []byte(tsaSetConfigShaping), 0o644); err != nil {
		t.Fatal(err)
	}
	tsaP := startTSA(t, writeTSAPolicy(t, dir, shapingFile))
	sink := startConcSink(t, 1, 300*time.Millisecond)
	nodeDir := filepath.Join(dir, "node")
	os.MkdirAll(nodeDir, 0o755)
	node := startDaemon(t, nil, "--policy", tsaNodePolicy(t, nodeDir, tsaP.url, shapingFile, sink.addr))

	sendMessages(t, node.addr, 1, func(int) string { return "first@tsa.test" }, func(int) string { return "first" })
	var cfg string
	waitUntil(t, 15*time.Second, "the override at the TSA daemon", func() bool {
		cfg = tsaP.get(t, "/get_config_v1/shaping.toml")
		return strings.Contains(cfg, "connection_limit = 1")
	}, func() string { return tail(node.log(), 30) + "\ntsa:\n" + tsaP.log() })
	m := regexp.MustCompile(`# expires: (\S+)`).FindStringSubmatch(cfg)
	if m == nil {
		t.Fatalf("no expiry in the override:\n%s", cfg)
	}
	expires, err := time.Parse(time.RFC3339, m[1])
	if err != nil {
		t.Fatal(err)
	}
	const changed = "TSA configuration overrides changed"
	waitUntil(t, 5*time.Second, "the node to see the override", func() bool {
		return strings.Count(node.log(), changed) >= 1
	}, func() string { return tail(node.log(), 30) })

	burst := func(phase string, n int) int {
		t.Helper()
		waitUntil(t, 15*time.Second, "the sink's connections to close", func() bool {
			open, _, _ := sink.state()
			return open == 0
		}, func() string { return tail(node.log(), 20) })
		sink.resetMax()
		_, _, before := sink.state()
		sendMessages(t, node.addr, n, func(int) string { return phase + "@tsa.test" }, func(int) string { return phase })
		waitUntil(t, 30*time.Second, phase+" delivered", func() bool {
			_, _, acc := sink.state()
			return acc >= before+n
		}, func() string {
			open, most, acc := sink.state()
			recs, _ := logrecord.ReadDirRaw(filepath.Join(nodeDir, "logs"))
			var lines []string
			for _, r := range recs {
				lines = append(lines, fmt.Sprint(r["type"], " ", r["timestamp"], " ", r["response"]))
			}
			return fmt.Sprintf("sink: open %d, most %d, accepted %d (before %d)\n%s\n%s", open, most, acc, before, strings.Join(lines, "\n"), tail(node.log(), 30))
		})
		_, most, _ := sink.state()
		return most
	}
	if most := burst("limited", 15); most != 1 {
		t.Fatalf("%d connections at once under the connection_limit = 1 override", most)
	}
	if time.Now().After(expires) {
		t.Fatalf("the override expired (%v) before the burst ended: the check above proves nothing", expires)
	}
	// the override expires: the served file changes, the node bumps again
	time.Sleep(time.Until(expires))
	waitUntil(t, 5*time.Second, "the node to see the override expire", func() bool {
		return strings.Count(node.log(), changed) >= 2
	}, func() string { return tail(node.log(), 30) })
	if most := burst("free", 15); most < 2 {
		t.Fatalf("%d connection(s) at once after the override expired (connection_limit = 10)", most)
	}
}

// waitUntil polls cond every 100 ms for up to d.
func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool, diag func() string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s\n%s", what, diag())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// received returns the recipients accepted so far.
func (cs *concSink) received() []rcptAt {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return append([]rcptAt(nil), cs.got...)
}
