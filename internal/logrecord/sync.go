package logrecord

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
)

// Records as durable as the mail: the queue calls Sync after a Reception
// record before the message's 250, and after a Delivery, Bounce or
// Expiration record before the message leaves the spool, so that a crash
// or a power cut never loses the record of an acknowledged or finished
// message. Sync is a group commit, as the spool's is: callers that arrive
// while a round runs join the next one, so one flush and one fsync per
// segment file serve every record logged by all of them.

// syncer runs the Sync rounds of a Logger.
type syncer struct {
	l    *Logger
	mu   sync.Mutex
	next *syncRound // the round callers join; nil when none is pending
	kick chan struct{}
}

// syncRound is one flush-and-fsync; its waiters are woken when it ends.
type syncRound struct {
	done chan struct{}
	err  error // set before done is closed
}

func (s *syncer) init(l *Logger) {
	s.l = l
	s.kick = make(chan struct{}, 1)
	go s.run()
}

// Sync returns when every record logged before the call is on stable
// storage: its zstd frame is ended, written to its segment file, and the
// file is fsynced (a segment sealed meanwhile was fsynced when it was
// sealed). It returns the first write or sync error of the round; records
// dropped because their disk failed are not durable, and the error says
// so.
func (l *Logger) Sync(ctx context.Context) error {
	s := &l.syncs
	s.mu.Lock()
	r := s.next
	if r == nil {
		r = &syncRound{done: make(chan struct{})}
		s.next = r
		select {
		case s.kick <- struct{}{}:
		default: // already kicked
		}
	}
	s.mu.Unlock()
	select {
	case <-r.done:
		return r.err
	case <-ctx.Done():
		return ctx.Err()
	case <-l.stopped:
		select {
		case <-r.done:
			return r.err
		default:
			return ErrClosed
		}
	}
}

// run takes the pending round (so that later callers open a new one),
// asks the writer goroutine to end its frames (queued behind every record
// logged before the round was taken), fsyncs the open segment files and
// wakes the round's callers.
func (s *syncer) run() {
	var files []*os.File
	for {
		select {
		case <-s.kick:
		case <-s.l.stopped:
			s.drain()
			return
		}
		s.mu.Lock()
		r := s.next
		s.next = nil
		s.mu.Unlock()
		if r == nil {
			continue
		}
		files = files[:0]
		r.err = s.l.flushFiles(&files)
		for _, f := range files {
			// A segment sealed after the flush was fsynced by seal and
			// closed: nothing left to do for it.
			if err := dataSync(f); err != nil && !errors.Is(err, os.ErrClosed) && r.err == nil {
				r.err = fmt.Errorf("logrecord: sync segment %s: %w", f.Name(), err)
			}
		}
		clear(files)
		close(r.done)
	}
}

// drain answers a round left pending when the writer stopped: Close
// sealed (and so fsynced) every segment, but records logged after Close
// were dropped.
func (s *syncer) drain() {
	s.mu.Lock()
	r := s.next
	s.next = nil
	s.mu.Unlock()
	if r != nil {
		r.err = ErrClosed
		close(r.done)
	}
}

// flushFiles is Flush that also returns the open segment files.
func (l *Logger) flushFiles(files *[]*os.File) error {
	done := make(chan error, 1)
	select {
	case l.queue <- item{done: done, files: files}:
	case <-l.stopped:
		return ErrClosed
	}
	select {
	case err := <-done:
		return err
	case <-l.stopped:
		return ErrClosed
	}
}
