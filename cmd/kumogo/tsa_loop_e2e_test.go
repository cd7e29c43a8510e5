package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/kumogo/kumogo/internal/logrecord"
)

// limitSink answers the first `limited` DATA commands with
// "421 4.7.28 ... rate limited" and accepts everything after, noting when
// each accepted message arrived.
type limitSink struct {
	addr string

	mu       sync.Mutex
	limited  int
	accepted []time.Time
}

func startLimitSink(t *testing.T, limited int) *limitSink {
	t.Helper()
	ls := &limitSink{limited: limited}
	srv := gosmtp.NewServer(gosmtp.BackendFunc(func(c *gosmtp.Conn) (gosmtp.Session, error) { return &limitSession{ls}, nil }))
	srv.Domain = "limit.test"
	srv.ReadTimeout = 30 * time.Second
	srv.WriteTimeout = 30 * time.Second
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ls.addr = l.Addr().String()
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return ls
}

func (ls *limitSink) acceptedTimes() []time.Time {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return append([]time.Time(nil), ls.accepted...)
}

type limitSession struct{ ls *limitSink }

func (s *limitSession) Reset()                                 {}
func (s *limitSession) Logout() error                          { return nil }
func (s *limitSession) Mail(string, *gosmtp.MailOptions) error { return nil }
func (s *limitSession) Rcpt(string, *gosmtp.RcptOptions) error { return nil }
func (s *limitSession) Data(r io.Reader) error {
	if _, err := io.Copy(io.Discard, r); err != nil {
		return err
	}
	s.ls.mu.Lock()
	defer s.ls.mu.Unlock()
	if s.ls.limited > 0 {
		s.ls.limited--
		return &gosmtp.SMTPError{Code: 421, EnhancedCode: gosmtp.EnhancedCode{4, 7, 28}, Message: "limit.test rate limited, try again later"}
	}
	s.ls.accepted = append(s.ls.accepted, time.Now())
	return nil
}

// tsaNodePolicy is a kumogo node built on policy-extras.shaping with
// automation: mail to tsa.test goes to the sink, outcomes are published
// to the TSA daemon and its suspensions applied.
func tsaNodePolicy(t *testing.T, dir, tsaURL, shapingFile, sink string) string {
	t.Helper()
	p := filepath.Join(dir, "node.lua")
	src := `local kumo = require 'kumo'
local shaping = require 'policy-extras.shaping'
local shaper = shaping:setup_with_automation {
  publish = { '` + tsaURL + `' },
  subscribe = { '` + tsaURL + `' },
  no_default_files = true,
  extra_files = { '` + shapingFile + `' },
}
kumo.on('init', function()
  kumo.define_spool { name = 'data', path = '` + dir + `/data' }
  kumo.define_spool { name = 'meta', path = '` + dir + `/meta' }
  kumo.configure_local_logs { log_dir = '` + dir + `/logs', max_segment_duration = '1s' }
  kumo.start_esmtp_listener { listen = '127.0.0.1:0', hostname = 'node.test', relay_hosts = { '127.0.0.1' } }
  shaper.setup_publish()
end)
kumo.on('get_egress_path_config', shaper.get_egress_path_config)
kumo.on('smtp_server_message_received', function(msg)
  msg:set_meta('queue', msg:recipient().domain)
end)
kumo.on('get_queue_config', function(domain)
  if domain == 'tsa.test' then
    return kumo.make_queue_config { protocol = { smtp = { mx_list = { '` + sink + `' } } }, retry_interval = '2s', max_retry_interval = '2s' }
  end
end)
`
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestTSAEndToEnd: the sink's "421 4.7.28 ... rate limited" to one of two
// nodes reaches the TSA daemon through that node's log hook; the daemon's
// Suspend rule (duration 12 s) gives a ready-queue suspension that both
// nodes take from /get_suspension_v1 and apply: mail sent to either node
// after it is held (the sink, now accepting everything, sees nothing)
// until the suspension expires, and then all of it is delivered.
func TestTSAEndToEnd(t *testing.T) {
	dir := t.TempDir()
	shapingFile := writeShaping(t, dir, "12s")
	tsaP := startTSA(t, writeTSAPolicy(t, dir, shapingFile))
	sink := startLimitSink(t, 1)
	var nodes []*daemonProc
	for _, name := range []string{"node", "node2"} {
		d := filepath.Join(dir, name)
		os.MkdirAll(d, 0o755)
		nodes = append(nodes, startDaemon(t, nil, "--policy", tsaNodePolicy(t, d, tsaP.url, shapingFile, sink.addr)))
	}
	node, node2 := nodes[0], nodes[1]
	nodeDir := filepath.Join(dir, "node")

	sendMessages(t, node.addr, 1, func(int) string { return "first@tsa.test" }, func(int) string { return "first" })
	deadline := time.Now().Add(15 * time.Second)
	var s tsaSuspensions
	for time.Now().Before(deadline) {
		if s = tsaP.suspensions(t); len(s.ReadyQ) > 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(s.ReadyQ) != 1 {
		recs, _ := logrecord.ReadDirRaw(filepath.Join(nodeDir, "logs"))
		var lines []string
		for _, r := range recs {
			lines = append(lines, fmt.Sprint(r["type"], " ", r["queue"], " ", r["site"], " ", r["response"]))
		}
		t.Fatalf("no suspension at the TSA daemon: %+v\nnode records:\n%s\nnode:\n%s\ntsa:\n%s", s, strings.Join(lines, "\n"), tail(node.log(), 30), tsaP.log())
	}
	susp := s.ReadyQ[0]
	if !strings.Contains(susp.Reason, "421 4.7.28") || susp.Source != "unspecified" {
		t.Fatalf("suspension %+v", susp)
	}
	// The node polls every second; give it two.
	time.Sleep(2 * time.Second)
	if time.Until(susp.Expires) < 5*time.Second {
		t.Fatalf("too little of the suspension is left to observe it: %+v", susp)
	}
	// node2 never saw the 421 itself: its suspension comes from the daemon.
	sendMessages(t, node.addr, 5, func(int) string { return "later@tsa.test" }, func(int) string { return "later" })
	sendMessages(t, node2.addr, 5, func(int) string { return "other@tsa.test" }, func(int) string { return "other" })
	sentAt := time.Now()
	for time.Now().Before(susp.Expires.Add(-500 * time.Millisecond)) {
		if got := sink.acceptedTimes(); len(got) > 0 {
			t.Fatalf("delivered at %v while suspended until %v (sent at %v)\nnode:\n%s", got[0], susp.Expires, sentAt, tail(node.log(), 30))
		}
		time.Sleep(100 * time.Millisecond)
	}
	// After expiry everything (the first message's retry and the 10) goes.
	end := susp.Expires.Add(15 * time.Second)
	for time.Now().Before(end) && len(sink.acceptedTimes()) < 11 {
		time.Sleep(100 * time.Millisecond)
	}
	got := sink.acceptedTimes()
	if len(got) != 11 {
		t.Fatalf("delivered %d of 11 after the suspension expired at %v\nnode:\n%s", len(got), susp.Expires, tail(node.log(), 40))
	}
	for _, at := range got {
		if at.Before(susp.Expires.Add(-time.Second)) {
			t.Fatalf("a message was delivered at %v, before the suspension's end %v", at, susp.Expires)
		}
	}
	for _, n := range nodes {
		// pushed over the daemon's websocket, not polled
		if !strings.Contains(n.log(), "applied (via websocket)") || strings.Contains(n.log(), "applied (via polling)") {
			t.Fatalf("a node did not take the suspension from the websocket:\n%s", tail(n.log(), 40))
		}
		if !strings.Contains(n.log(), "ready queue suspension added") {
			t.Fatalf("a node did not log the suspension:\n%s", tail(n.log(), 40))
		}
	}
}
