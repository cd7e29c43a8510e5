package smtpd

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// acceptor wraps the listening socket: it enforces max_connections before
// go-smtp sees a connection, answers clients when the process is out of
// file descriptors, and wraps every connection in a session.
type acceptor struct {
	net.Listener
	s *Server
}

func (a *acceptor) Accept() (net.Conn, error) {
	s := a.s
	for {
		c, err := a.Listener.Accept()
		if err != nil {
			if s.shutting.Load() {
				return nil, err
			}
			if !isFDExhausted(err) {
				s.fdLimit.logAcceptError(s, err)
				return nil, err // go-smtp retries temporary errors
			}
			// the pending client would wait in the backlog until a
			// descriptor is free: answer it now instead
			if c = s.fdLimit.shed(s, a.Listener, err); c == nil {
				continue
			}
		}
		if s.shutting.Load() {
			writeAndClose(c, 421, textShuttingDown(s.cfg.Hostname))
			continue
		}
		if n := s.active.Add(1); s.cfg.MaxConnections > 0 && n > int64(s.cfg.MaxConnections) {
			s.active.Add(-1)
			go writeAndClose(c, 421, textTooManySessions(s.cfg.Hostname))
			continue
		}
		return newSession(s, c), nil
	}
}

func writeAndClose(c net.Conn, code int, text string) {
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "%d %s\r\n", code, text)
	c.Close()
}

func isFDExhausted(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}

// fdReserve keeps one file descriptor open so that, when accept fails for
// want of descriptors (EMFILE, ENFILE), one can be freed to accept the
// waiting client, tell it 421 and close it, instead of leaving it hanging
// in the listen backlog. Accept errors are logged at most once a second,
// with the number left out.
type fdReserve struct {
	mu       sync.Mutex
	file     *os.File
	closed   bool
	lastLog  time.Time
	unlogged int
	refused  int
}

// open takes the reserve descriptor (when the listener binds; again after
// each use).
func (r *fdReserve) open() {
	if r.file == nil && !r.closed {
		r.file, _ = os.Open(os.DevNull)
	}
}

// init takes the reserve when the listener binds.
func (r *fdReserve) init() {
	r.mu.Lock()
	r.open()
	r.mu.Unlock()
}

// release gives the reserve back when the listener stops.
func (r *fdReserve) release() {
	r.mu.Lock()
	r.closed = true
	if r.file != nil {
		r.file.Close()
		r.file = nil
	}
	r.mu.Unlock()
}

// shed frees the reserve descriptor to accept the waiting client. If the
// reserve can be taken again at once, descriptors are available after all
// (other sessions ended meanwhile) and the client is returned to be
// served; otherwise it is answered 421 and closed. Without a reserve (it
// could not be taken again yet) shed pauses briefly so that the accept
// loop does not spin.
func (r *fdReserve) shed(s *Server, ln net.Listener, err error) net.Conn {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.noteLocked(s, err)
	if r.file == nil {
		r.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
		r.mu.Lock()
		r.open()
		return nil
	}
	r.file.Close()
	r.file = nil
	c, aerr := ln.Accept()
	r.open()
	if aerr != nil {
		return nil
	}
	if r.file != nil {
		return c
	}
	r.refused++
	writeAndClose(c, 421, textTooManySessions(s.cfg.Hostname))
	r.open()
	return nil
}

func (r *fdReserve) logAcceptError(s *Server, err error) {
	r.mu.Lock()
	r.noteLocked(s, err)
	r.mu.Unlock()
}

// noteLocked logs an accept error, at most once a second.
func (r *fdReserve) noteLocked(s *Server, err error) {
	now := time.Now()
	if now.Sub(r.lastLog) < time.Second {
		r.unlogged++
		return
	}
	s.log.Error().Err(err).Str("listener", s.cfg.Listen).Int("suppressed", r.unlogged).Int("refused_with_421", r.refused).
		Msg("accept failed (at the file descriptor limit, clients get 421)")
	r.lastLog, r.unlogged = now, 0
}
