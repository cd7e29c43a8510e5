// Command countsink is the counting sink of the deep-queue scenario
// (bench/deepqueue.sh): a go-smtp server on loopback that answers MAIL
// with 451 while --defer-file exists (a destination that is throttling),
// and otherwise takes every message and checks its recipients
// rNNNNNNN@... (as bench/deepfill writes them) against --expect: each
// index counted once, duplicates and unknown recipients counted apart.
// Every 250 ms it rewrites --status with one line, and prints it on
// SIGINT/SIGTERM:
//
//	accepted=A unique=U dup=D unknown=K refused=R first_accept_ns=T last_accept_ns=T refused_first_ns=T
package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/emersion/go-smtp"
)

type sink struct {
	deferFile string
	refused   atomic.Int64
	accepted  atomic.Int64
	unknown   atomic.Int64
	dup       atomic.Int64
	unique    atomic.Int64
	firstOK   atomic.Int64
	lastOK    atomic.Int64
	firstNo   atomic.Int64

	mu   sync.Mutex
	seen []bool
}

type session struct {
	s     *sink
	rcpts []string
}

func (s *sink) NewSession(*smtp.Conn) (smtp.Session, error) { return &session{s: s}, nil }

func (ss *session) Mail(string, *smtp.MailOptions) error {
	if _, err := os.Stat(ss.s.deferFile); ss.s.deferFile != "" && err == nil {
		ss.s.refused.Add(1)
		ss.s.firstNo.CompareAndSwap(0, time.Now().UnixNano())
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "throttled, try later"}
	}
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.rcpts = append(ss.rcpts, to)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	if _, err := io.Copy(io.Discard, r); err != nil {
		return err
	}
	s := ss.s
	now := time.Now().UnixNano()
	s.firstOK.CompareAndSwap(0, now)
	s.lastOK.Store(now)
	s.mu.Lock()
	for _, rc := range ss.rcpts {
		s.accepted.Add(1)
		user, _, _ := strings.Cut(rc, "@")
		i, err := strconv.Atoi(strings.TrimPrefix(user, "r"))
		if !strings.HasPrefix(user, "r") || err != nil || i < 0 || i >= len(s.seen) {
			s.unknown.Add(1)
			continue
		}
		if s.seen[i] {
			s.dup.Add(1)
			continue
		}
		s.seen[i] = true
		s.unique.Add(1)
	}
	s.mu.Unlock()
	ss.rcpts = nil
	return nil
}

func (ss *session) Reset()        { ss.rcpts = nil }
func (ss *session) Logout() error { return nil }

func (s *sink) status() string {
	return fmt.Sprintf("accepted=%d unique=%d dup=%d unknown=%d refused=%d first_accept_ns=%d last_accept_ns=%d refused_first_ns=%d",
		s.accepted.Load(), s.unique.Load(), s.dup.Load(), s.unknown.Load(), s.refused.Load(), s.firstOK.Load(), s.lastOK.Load(), s.firstNo.Load())
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "loopback address to listen on")
	deferFile := flag.String("defer-file", "", "answer MAIL with 451 while this file exists")
	expect := flag.Int("expect", 0, "recipient indexes 0..N-1 to check")
	statusFile := flag.String("status", "", "file rewritten every 250 ms with the counts")
	flag.Parse()
	host, _, err := net.SplitHostPort(*listen)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		fmt.Fprintln(os.Stderr, "countsink: --listen must be a loopback address")
		os.Exit(2)
	}
	s := &sink{deferFile: *deferFile, seen: make([]bool, *expect)}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "countsink:", err)
		os.Exit(1)
	}
	srv := smtp.NewServer(s)
	srv.Domain = "countsink.test"
	srv.ReadTimeout, srv.WriteTimeout = time.Minute, time.Minute
	srv.MaxRecipients = 1000
	srv.MaxMessageBytes = 64 << 20
	srv.AllowInsecureAuth = true
	go srv.Serve(ln)
	fmt.Fprintf(os.Stderr, "listening on %s\n", ln.Addr())
	write := func() {
		if *statusFile == "" {
			return
		}
		tmp := *statusFile + ".tmp"
		if os.WriteFile(tmp, []byte(s.status()+"\n"), 0o644) == nil {
			_ = os.Rename(tmp, *statusFile)
		}
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			write()
		case <-sigs:
			write()
			srv.Close()
			fmt.Println(s.status())
			return
		}
	}
}
