package spool

import (
	"context"
	"errors"
	"sync"

	"github.com/cockroachdb/pebble/v2"

	"github.com/kumogo/kumogo/internal/message"
)

// Staged saves split a synchronous Save in two, so that the caller can
// make other writes durable in the same flush: Stage writes the message
// and does every flush it needs except the last one, and Commit does that
// last flush for every message staged before it was called. The queue uses
// it to sync a message's Reception record together with the message
// (queue/commit.go): one round of flushes for the spool and the log
// instead of the spool's round followed by the log's.
//
//   - RocksDB: Stage commits the entry to pebble without Sync (it is in
//     the memtable and queued for the WAL), Commit syncs the WAL with an
//     empty synced LogData batch, which covers every earlier write because
//     the WAL is appended in commit order.
//   - LocalDisk with group commit: Stage writes the temporary file, waits
//     for the round that makes its data durable and renames it into place;
//     Commit is the round that makes the names durable (the data is still
//     durable before its name).
//   - LocalDisk without group commit (no syncfs): Stage is a synchronous
//     Put and Commit has nothing to do for it.
//
// A message staged but not committed must be treated as not stored: the
// caller removes it when Commit fails.

// stager is the optional part of a Store that supports staged Puts.
type stager interface {
	// stage stores b under id like Put(ctx, id, b, true) except for the
	// last flush.
	stage(ctx context.Context, id string, b []byte) error
	// commit makes every entry staged before the call durable.
	commit(ctx context.Context) error
}

// Stage writes msg's data and meta like Save(ctx, msg, true), but leaves
// the last flush to Commit: msg is durable once a Commit called after
// Stage returned has succeeded. If Stage fails, nothing is left stored.
func (s *Spools) Stage(ctx context.Context, msg *message.Message) error {
	return s.save(ctx, msg, true, true)
}

// Commit makes every message staged before the call durable: one flush
// per store (one syncfs round for two LocalDisk stores on one file
// system), shared by every staged message. It returns the first failure;
// messages staged before a failed Commit must be removed, not acknowledged.
func (s *Spools) Commit(ctx context.Context) error {
	if d, _, ok := sharedPair(s.data, s.meta); ok {
		return d.commit(ctx)
	}
	stores := make([]stager, 0, 2)
	for _, st := range []Store{s.data, s.meta} {
		if sg, ok := st.(stager); ok {
			stores = append(stores, sg)
		}
	}
	switch len(stores) {
	case 0:
		return nil
	case 1:
		return stores[0].commit(ctx)
	}
	var wg sync.WaitGroup
	var derr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		derr = stores[0].commit(ctx)
	}()
	merr := stores[1].commit(ctx)
	wg.Wait()
	return errors.Join(derr, merr)
}

func (s *pebbleStore) stage(ctx context.Context, id string, b []byte) error {
	if !s.group {
		// each synchronous write does its own flush
		return s.Put(ctx, id, b, true)
	}
	if err := s.Put(ctx, id, b, false); err != nil {
		return err
	}
	if !s.flush { // a flush spool's Put counted it
		s.syncedPuts.Add(1)
	}
	return nil
}

func (s *pebbleStore) commit(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.enter(); err != nil {
		return s.errf("commit", err)
	}
	defer s.exit()
	if !s.group {
		return nil
	}
	// An empty LogData batch committed with Sync: pebble's commit pipeline
	// syncs the WAL up to it, and so every write queued before it. It
	// cannot be interrupted once started (as Put's synced writes).
	if err := s.guard(func(db *pebble.DB) error { return db.LogData(nil, pebble.Sync) }); err != nil {
		return s.errf("commit", err)
	}
	return nil
}

func (s *localDisk) stage(ctx context.Context, id string, b []byte) error {
	return s.put(ctx, id, b, true, true)
}

func (s *localDisk) commit(ctx context.Context) error {
	if s.syncer == nil {
		return nil // no group commit: stage synced the whole write
	}
	if err := s.enter(); err != nil {
		return s.errf("commit", err)
	}
	defer s.exit()
	if err := s.syncer.round(ctx); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return s.errf("commit", err)
	}
	return nil
}
