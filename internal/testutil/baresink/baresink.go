// Package baresink is a bare go-smtp server that accepts every sender and
// recipient and discards message bodies (DATA and BDAT), counting what it
// saw. It is the peer in tests and the baseline that kumogo's sink is
// measured against (bench/baresink), so it does nothing beyond what go-smtp
// itself does. It does not import testing, so commands can use it.
package baresink

import (
	"errors"
	"io"
	"log"
	"net"
	"sync/atomic"

	"github.com/emersion/go-smtp"
)

// Sink is a running discard server. Its counters are safe for concurrent
// reads at any time.
type Sink struct {
	// Messages counts bodies read to the end (one per DATA or BDAT ... LAST).
	Messages atomic.Int64
	// Recipients counts accepted RCPT commands.
	Recipients atomic.Int64
	// Bytes counts body bytes read.
	Bytes atomic.Int64
	// Sessions counts accepted connections.
	Sessions atomic.Int64

	srv  *smtp.Server
	ln   net.Listener
	done chan struct{}
	err  error // Serve's result, valid after done is closed
}

// Listen starts a sink on addr ("127.0.0.1:0" picks a free port). errLog
// receives go-smtp's connection errors; nil discards them.
func Listen(addr string, errLog *log.Logger) (*Sink, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &Sink{ln: ln, done: make(chan struct{})}
	s.srv = smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		s.Sessions.Add(1)
		return session{s}, nil
	}))
	s.srv.Domain = "baresink.localhost"
	if errLog == nil {
		errLog = log.New(io.Discard, "", 0)
	}
	s.srv.ErrorLog = errLog
	go func() {
		defer close(s.done)
		s.err = s.srv.Serve(ln)
	}()
	return s, nil
}

// Addr is the address the sink listens on, as host:port.
func (s *Sink) Addr() string { return s.ln.Addr().String() }

// Also serves the same sink on one more address as well (a many-address
// sink: one counter for many destinations). Close stops every listener.
func (s *Sink) Also(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	go s.srv.Serve(ln)
	return nil
}

// Close stops accepting, closes every open connection and waits for the
// accept loop to end. It is safe to call more than once.
func (s *Sink) Close() error {
	err := s.srv.Close()
	<-s.done
	if errors.Is(err, smtp.ErrServerClosed) {
		err = nil
	}
	return err
}

type session struct{ s *Sink }

func (session) Reset()                                 {}
func (session) Logout() error                          { return nil }
func (session) Mail(string, *smtp.MailOptions) error   { return nil }
func (x session) Rcpt(string, *smtp.RcptOptions) error { x.s.Recipients.Add(1); return nil }

func (x session) Data(r io.Reader) error {
	n, err := io.Copy(io.Discard, r)
	x.s.Bytes.Add(n)
	if err != nil {
		return err
	}
	x.s.Messages.Add(1)
	return nil
}
