package main

import (
	"bufio"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kumogo/kumogo/internal/sysutil"
)

// slowAcceptServer serves only its first `serve` connections; every later
// one is left waiting for its greeting, as connections are when a busy
// server's listen queue overflows (the kernel completes the handshake, or
// the client keeps retrying its SYN, long before the server accepts). It
// replies to messages without PIPELINING and never answers QUIT.
type slowAcceptServer struct {
	ln    net.Listener
	serve int

	mu       sync.Mutex
	conns    int
	msgs     int
	lastMsg  time.Time // when the last 250 for a message was written
	idle     []net.Conn
	quits    atomic.Int64
	wg       sync.WaitGroup
	stopping atomic.Bool
}

func startSlowAcceptServer(t *testing.T, serve int) *slowAcceptServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &slowAcceptServer{ln: ln, serve: serve}
	s.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns++
			n := s.conns
			if n > s.serve {
				s.idle = append(s.idle, c) // held silent until the test ends
			}
			s.mu.Unlock()
			if n <= s.serve {
				s.wg.Go(func() { s.handle(c) })
			}
		}
	})
	t.Cleanup(s.stop)
	return s
}

func (s *slowAcceptServer) stop() {
	if s.stopping.Swap(true) {
		return
	}
	s.ln.Close()
	s.mu.Lock()
	for _, c := range s.idle {
		c.Close()
	}
	s.idle = nil
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *slowAcceptServer) handle(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	r := bufio.NewReader(c)
	w := bufio.NewWriter(c)
	reply := func(line string) {
		w.WriteString(line + "\r\n")
		w.Flush()
	}
	reply("220 slow.test ESMTP")
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		verb, _, _ := strings.Cut(strings.TrimRight(line, "\r\n"), " ")
		switch strings.ToUpper(verb) {
		case "EHLO":
			reply("250-slow.test\r\n250 8BITMIME")
		case "MAIL", "RCPT", "RSET":
			reply("250 ok")
		case "DATA":
			reply("354 go on")
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
			}
			s.mu.Lock()
			reply("250 accepted")
			s.msgs++
			s.lastMsg = time.Now()
			s.mu.Unlock()
		case "QUIT":
			s.quits.Add(1) // and no reply: the client must not wait for one
		default:
			reply("502 5.5.2 what")
		}
	}
}

// TestFinishDoesNotWaitForPendingConnections: once the last message is
// answered, traffic-gen exits at once, although most of its connections
// are still waiting for a greeting and the connected ones get no reply to
// QUIT. It used to wait for each pending connection until --timeout (or
// the kernel's SYN retries) and then for a reply to every QUIT.
func TestFinishDoesNotWaitForPendingConnections(t *testing.T) {
	const conns, served, msgs = 2000, 100, 2000
	if limit, err := sysutil.RaiseFileLimit(); err == nil && limit > 0 && limit < 2*conns+200 {
		t.Skipf("open file limit %d is too low for %d connections at both ends", limit, conns)
	}
	s := startSlowAcceptServer(t, served)
	start := time.Now()
	r := runTG(t, "--target", s.addr(), "--concurrency", "2000", "--message-count", "2000",
		"--timeout", "10", "--duration", "20", "--body-size", "1kb")
	returned := time.Now()
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	s.stop()
	s.mu.Lock()
	got, last := s.msgs, s.lastMsg
	s.mu.Unlock()
	if r.summary.Sent != msgs || got != msgs {
		t.Fatalf("summary sent=%d, server got %d, want %d", r.summary.Sent, got, msgs)
	}
	after := returned.Sub(last)
	t.Logf("run took %v; returned %v after the last message was answered", returned.Sub(start), after)
	if after > 3*time.Second {
		t.Errorf("traffic-gen returned %v after the last message was answered; want well under 3s", after)
	}
	if q := s.quits.Load(); q != served {
		t.Errorf("%d QUITs from %d served connections", q, served)
	}
}

func (s *slowAcceptServer) addr() string { return s.ln.Addr().String() }
