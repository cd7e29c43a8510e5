package spool

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/kumogo/kumogo/internal/message"
)

// Groups of messages written and removed together. A log hook turns every
// log record into a message (KumoMTA's configure_log_hook page), so a
// hooked daemon stores and removes several small messages per mail: one
// pebble commit per part and per message, each with its own trip through
// pebble's commit pipeline, cost more than the records themselves.
// StageGroup writes many messages with one write per store (a pebble
// batch) and RemoveGroup deletes many with one per store; durability is
// unchanged: a staged group is durable after the next Commit, as a staged
// message is.

// groupStore is the optional part of a Store that writes and deletes many
// entries in one operation (pebbleStore).
type groupStore interface {
	// putGroup stores bodies[i] under ids[i], all or none; with sync
	// (or a flush spool) durably, otherwise like a staged Put whose
	// last flush is left to commit.
	putGroup(ctx context.Context, ids []string, bodies [][]byte, sync bool) error
	// removeGroup deletes ids (those not stored are ignored).
	removeGroup(ctx context.Context, ids []string) error
}

// StageGroup writes every message of msgs like Stage: each is durable
// once a Commit called after StageGroup returned has succeeded. Two
// RocksDB stores take the group in one batch each; other stores stage the
// messages concurrently, one by one. It is all or nothing: on failure no
// message of the group is left stored.
func (s *Spools) StageGroup(ctx context.Context, msgs []*message.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	gd, ok1 := s.data.(groupStore)
	gm, ok2 := s.meta.(groupStore)
	if !ok1 || !ok2 {
		return s.stageEach(ctx, msgs)
	}
	ids := make([]string, len(msgs))
	data := make([][]byte, len(msgs))
	meta := make([][]byte, len(msgs))
	for i, msg := range msgs {
		ids[i] = msg.ID()
		data[i] = msg.Data()
		if len(data[i]) == 0 {
			return fmt.Errorf("spool: save %s: message data is empty", ids[i])
		}
		b, err := EncodeMeta(msg)
		if err != nil {
			return fmt.Errorf("spool: save %s: %w", ids[i], err)
		}
		meta[i] = b
	}
	s.beginGroup(ids)
	defer s.endGroup(ids)
	// the data first: a crash in between leaves data without meta, which
	// the next enumeration sets aside, never meta without its data
	if err := gd.putGroup(ctx, ids, data, false); err != nil {
		return err
	}
	if err := gm.putGroup(ctx, ids, meta, false); err != nil {
		if rerr := gd.removeGroup(context.WithoutCancel(ctx), ids); rerr != nil {
			err = errors.Join(err, rerr)
		}
		return err
	}
	return nil
}

// stageEach stages msgs concurrently, so that stores with a group commit
// of their own (LocalDisk) share its rounds; on a failure the messages
// staged are removed again.
func (s *Spools) stageEach(ctx context.Context, msgs []*message.Message) error {
	errs := make([]error, len(msgs))
	var wg sync.WaitGroup
	for i, msg := range msgs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.save(ctx, msg, true, true)
		}()
	}
	wg.Wait()
	err := errors.Join(errs...)
	if err == nil {
		return nil
	}
	rctx := context.WithoutCancel(ctx)
	for i, msg := range msgs {
		if errs[i] == nil {
			if rerr := s.Remove(rctx, msg.ID()); rerr != nil {
				err = errors.Join(err, rerr)
			}
		}
	}
	return err
}

// RemoveGroup deletes both parts of every message of ids, the meta parts
// first (as Remove does), with one operation per store when the stores
// can take a group. Removals are not synced.
func (s *Spools) RemoveGroup(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	gd, ok1 := s.data.(groupStore)
	gm, ok2 := s.meta.(groupStore)
	if !ok1 || !ok2 {
		var err error
		for _, id := range ids {
			err = errors.Join(err, s.Remove(ctx, id))
		}
		return err
	}
	merr := gm.removeGroup(ctx, ids)
	return errors.Join(merr, gd.removeGroup(ctx, ids))
}

func (s *Spools) beginGroup(ids []string) {
	s.mu.Lock()
	for _, id := range ids {
		s.inflight[id]++
		if s.recent != nil {
			s.recent[id] = struct{}{}
		}
	}
	s.mu.Unlock()
}

func (s *Spools) endGroup(ids []string) {
	s.mu.Lock()
	for _, id := range ids {
		if s.inflight[id]--; s.inflight[id] <= 0 {
			delete(s.inflight, id)
		}
	}
	s.mu.Unlock()
}
