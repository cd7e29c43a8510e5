package spool

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"

	"github.com/rs/zerolog"
)

// fsSyncer runs the LocalDisk group commit for one file system: rounds of
// syncfs(2) that every waiting writer shares. The data and meta spools of
// one file system share a syncer (see OpenSpools), since one syncfs covers
// both.
type fsSyncer struct {
	dir *os.File               // a directory on the file system
	fn  func(f *os.File) error // syncfs; replaced by tests
	log zerolog.Logger

	mu   sync.Mutex
	next *syncRound // the round writers join; nil when none is pending
	refs int        // stores using the syncer

	kick  chan struct{} // a round is pending
	quit  chan struct{} // closed by the last release
	done  chan struct{} // closed when the committer has stopped
	syncs atomic.Uint64
}

// syncRound is one syncfs. Writers join the next round before it starts
// and are all woken when it ends.
type syncRound struct {
	done chan struct{}
	err  error // set before done is closed
}

func newFSSyncer(dir string, log zerolog.Logger) (*fsSyncer, error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	s := &fsSyncer{
		dir:  d,
		fn:   syncfs,
		log:  log,
		refs: 1,
		kick: make(chan struct{}, 1),
		quit: make(chan struct{}),
		done: make(chan struct{}),
	}
	go s.committer()
	return s, nil
}

// acquire adds a user; it fails once the syncer has been released by all.
func (s *fsSyncer) acquire() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.refs == 0 {
		return false
	}
	s.refs++
	return true
}

// release drops a user; the last one stops the committer. No round may be
// awaited by the releasing store any more.
func (s *fsSyncer) release() error {
	s.mu.Lock()
	s.refs--
	last := s.refs == 0
	s.mu.Unlock()
	if !last {
		return nil
	}
	close(s.quit)
	<-s.done
	return s.dir.Close()
}

// round waits until a syncfs that started after the call has finished,
// joining the pending round or opening one. Everything written before the
// call is then on stable storage, including renames and new directories.
func (s *fsSyncer) round(ctx context.Context) error {
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
	}
}

// committer runs the rounds: it takes the pending round (so that later
// writers open a new one), runs one syncfs for everyone in it, and wakes
// them. While a syncfs runs, the next round fills up.
func (s *fsSyncer) committer() {
	defer close(s.done)
	for {
		select {
		case <-s.kick:
		case <-s.quit:
			return
		}
		s.mu.Lock()
		r := s.next
		s.next = nil
		s.mu.Unlock()
		if r == nil {
			continue
		}
		err := s.fn(s.dir)
		s.syncs.Add(1)
		if err != nil {
			r.err = fmt.Errorf("syncfs: %w", err)
			s.log.Error().Err(r.err).Msg("spool sync failed")
		}
		close(r.done)
	}
}
