package spool

import (
	"context"

	"github.com/cockroachdb/pebble/v2"
)

// putGroup writes the group as one pebble batch: one trip through the
// commit pipeline and one WAL record instead of one per entry. Without
// sync it is a staged write (stage.go): the batch is committed without
// Sync and the caller's commit syncs the WAL, which covers it; a flush
// spool, or a store without group commit, syncs the batch itself.
func (s *pebbleStore) putGroup(ctx context.Context, ids []string, bodies [][]byte, sync bool) error {
	if len(ids) == 0 {
		return nil
	}
	for _, id := range ids {
		if err := checkID(id); err != nil {
			return s.errf("put", err)
		}
	}
	if err := beginPut(ctx, ids[0], s, s.health); err != nil {
		return err
	}
	defer s.exit()
	sync = sync || s.flush || !s.group
	if sync && !s.group {
		s.syncMu.Lock()
		defer s.syncMu.Unlock()
	}
	opts := pebble.NoSync
	if sync {
		opts = pebble.Sync
	}
	err := s.guard(func(db *pebble.DB) error {
		b := db.NewBatch()
		defer b.Close()
		for i, id := range ids {
			if err := b.Set(liveKey(id), bodies[i], nil); err != nil {
				return err
			}
		}
		return b.Commit(opts)
	})
	if err != nil {
		return s.errf("put group of "+ids[0], err)
	}
	n := uint64(len(ids))
	s.puts.Add(n)
	// a staged write counts as synced (stage.go)
	s.syncedPuts.Add(n)
	return nil
}

// removeGroup deletes ids in one pebble batch, not synced (as Remove).
func (s *pebbleStore) removeGroup(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	if err := s.enter(); err != nil {
		return s.errf("remove group", err)
	}
	defer s.exit()
	err := s.guard(func(db *pebble.DB) error {
		b := db.NewBatch()
		defer b.Close()
		for _, id := range ids {
			if err := b.Delete(liveKey(id), nil); err != nil {
				return err
			}
		}
		return b.Commit(pebble.NoSync)
	})
	if err != nil {
		return s.errf("remove group of "+ids[0], err)
	}
	return nil
}
