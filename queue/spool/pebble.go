package spool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/rs/zerolog"

	"github.com/kumogo/kumogo/internal/config"
)

// Key prefixes of the RocksDB kind.
const (
	liveKeyPrefix    = "m/"
	corruptKeyPrefix = "c/"
)

// pebbleMemTable is the memtable size of the data spool: a message that is
// delivered (and deleted) before its memtable is flushed never reaches an
// sstable, so a larger memtable saves writing most bodies twice.
const pebbleMemTable = 64 << 20

// pebbleMetaMemTable is the memtable size of the meta spool, whose entries
// are a few hundred bytes: 16 MB holds the meta of tens of thousands of
// messages, minutes of traffic. A memtable is allocated outside the Go heap
// (pebble's manual allocator) and its pages become resident as it fills,
// so at 64 MB the meta memtable alone kept the relay's RSS rising for ten
// minutes at 200 messages a second (BENCHMARKS.md, soak).
const pebbleMetaMemTable = 16 << 20

// pebbleMemTables is how many memtables of a store may be full and waiting
// for their flush before writes stall (pebble's default, made explicit):
// with the active one, a store holds at most this many plus one.
const pebbleMemTables = 2

// memTableSize is the memtable size for the spool named name.
func memTableSize(name string) uint64 {
	if name == "meta" {
		return pebbleMetaMemTable
	}
	return pebbleMemTable
}

// pebbleStore is the RocksDB Store, served by pebble.
type pebbleStore struct {
	name, path   string
	flush, group bool
	log          zerolog.Logger
	health       *health
	opts         *pebble.Options
	// db is nil only after a failed store was closed and could not be
	// opened again (see fail); it changes under mu's write lock.
	db *pebble.DB

	stalled atomic.Bool
	syncMu  sync.Mutex // serializes synced writes when group commit is off

	mu     sync.RWMutex // read-held by operations in flight, write-held by Close
	closed bool
	bg     sync.WaitGroup // work that may outlive its call: cancelled writes, iterators

	failed      atomic.Pointer[error] // why the store takes no writes; nil when healthy
	reopenEvery time.Duration
	kick        chan struct{}  // fail wakes the reopen loop
	quit        chan struct{}  // closed by Close: stops the reopen loop
	loops       sync.WaitGroup // the reopen loop

	puts, syncedPuts, syncs atomic.Uint64
}

func openPebble(cfg config.Spool, fl floors, log zerolog.Logger, group bool) (*pebbleStore, error) {
	return openPebbleFS(cfg, fl, log, group, vfs.Default, reopenInterval)
}

// openPebbleFS is openPebble on the file system base (tests inject faults
// there), retrying a failed store every reopenEvery.
func openPebbleFS(cfg config.Spool, fl floors, log zerolog.Logger, group bool, base vfs.FS, reopenEvery time.Duration) (*pebbleStore, error) {
	s := &pebbleStore{
		reopenEvery: reopenEvery,
		name:        cfg.Name,
		path:        cfg.Path,
		flush:       cfg.Flush,
		group:       group,
		log:         log,
		health:      newHealth(cfg.Path, fl),
		kick:        make(chan struct{}, 1),
		quit:        make(chan struct{}),
	}
	if len(cfg.RocksParams) > 0 {
		keys := make([]string, 0, len(cfg.RocksParams))
		for k := range cfg.RocksParams {
			keys = append(keys, k)
		}
		log.Info().Strs("keys", keys).Msg("rocks_params are RocksDB tuning knobs; ignored by the pebble store")
	}
	s.opts = &pebble.Options{
		FS:           countingFS{FS: base, n: &s.syncs},
		Logger:       pebbleLogger{log},
		MemTableSize: memTableSize(cfg.Name),
		// bounds the memory held in memtables (see pebbleMemTables)
		MemTableStopWritesThreshold: pebbleMemTables,
		EventListener: &pebble.EventListener{
			WriteStallBegin: func(info pebble.WriteStallBeginInfo) {
				s.stalled.Store(true)
				log.Warn().Str("reason", info.Reason).Msg("spool write stall")
			},
			WriteStallEnd: func() {
				s.stalled.Store(false)
				log.Info().Msg("spool write stall ended")
			},
		},
	}
	db, err := s.openDB()
	if err != nil {
		if strings.Contains(err.Error(), "lock") {
			return nil, fmt.Errorf("spool %s: %s is locked by another process or store (is another kumogo already using this spool?): %w", cfg.Name, cfg.Path, err)
		}
		return nil, s.errf("open", err)
	}
	s.db = db
	s.loops.Add(1)
	go s.reopenLoop()
	return s, nil
}

// openDB opens the pebble DB; a Fatalf during the open (a MANIFEST that
// cannot be written on a full disk) is returned as an error.
func (s *pebbleStore) openDB() (db *pebble.DB, err error) {
	defer func() {
		if r := recover(); r != nil {
			db, err = nil, asFatal(r)
		}
	}()
	return pebble.Open(s.path, s.opts)
}

// reopenInterval is how often a failed store checks whether it can be
// opened again.
const reopenInterval = 2 * time.Second

// guard runs fn, a call into pebble made by this goroutine. pebble answers
// an error it cannot recover from in its commit pipeline (such as ENOSPC
// while appending to its WAL) with Fatalf, which panics; guard turns that
// into an error instead of letting it kill the daemon, and takes the store
// out of service (see fail). A failed store fails at once.
func (s *pebbleStore) guard(fn func(db *pebble.DB) error) (err error) {
	if f := s.failed.Load(); f != nil {
		return *f
	}
	db := s.db
	if db == nil {
		return errors.New("store is not open")
	}
	defer func() {
		if r := recover(); r != nil {
			err = s.fail(asFatal(r))
		}
	}()
	return fn(db)
}

// fail takes the store out of service after pebble's commit pipeline broke:
// writes fail at once (so sessions get a 4xx and the listener's health
// check refuses new ones) and a loop reopens the DB once the file system is
// above its floors again. Every write acknowledged before the failure is
// in the WAL, which the reopen replays.
func (s *pebbleStore) fail(fe *fatalError) error {
	err := fmt.Errorf("not accepting writes until the store is reopened: %w", fe)
	if s.failed.CompareAndSwap(nil, &err) {
		s.log.Error().Err(fe).Msg("spool store failed; no writes until it is reopened, tried every " + s.reopenEvery.String() + " once the disk is above its floors")
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
	return *s.failed.Load()
}

// reopenLoop runs for the store's lifetime: woken by fail, it tries to
// reopen the DB every reopenEvery until that works, then sleeps again.
func (s *pebbleStore) reopenLoop() {
	defer s.loops.Done()
	for {
		select {
		case <-s.quit:
			return
		case <-s.kick:
		}
		if !s.retryReopen() {
			return
		}
	}
}

// retryReopen tries to reopen the failed DB every reopenEvery; it reports
// false when the store was closed meanwhile.
func (s *pebbleStore) retryReopen() bool {
	t := time.NewTicker(s.reopenEvery)
	defer t.Stop()
	for {
		select {
		case <-s.quit:
			return false
		case <-t.C:
		}
		if s.health.get() != nil {
			continue // below a floor: reopening would fail the same way
		}
		if s.reopen() {
			return true
		}
	}
}

// reopen closes the failed DB and opens it again; it reports whether the
// loop is done (reopened, or the store was closed).
func (s *pebbleStore) reopen() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return true
	}
	s.bg.Wait()
	if s.db != nil {
		if err := closeDB(s.db); err != nil {
			s.log.Debug().Err(err).Msg("closing the failed spool store")
		}
		s.db = nil
	}
	db, err := s.openDB()
	if err != nil {
		s.log.Warn().Err(err).Msg("spool store could not be reopened yet")
		return false
	}
	s.db = db
	s.failed.Store(nil)
	s.log.Info().Msg("spool store reopened; accepting writes again")
	return true
}

// closeDB closes db, turning a Fatalf into an error.
func closeDB(db *pebble.DB) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = asFatal(r)
		}
	}()
	return db.Close()
}

func (s *pebbleStore) errf(op string, err error) error {
	return fmt.Errorf("spool %s (RocksDB %s): %s: %w", s.name, s.path, op, err)
}

func (s *pebbleStore) enter() error {
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return ErrClosed
	}
	return nil
}

func (s *pebbleStore) exit() { s.mu.RUnlock() }

func liveKey(id string) []byte    { return []byte(liveKeyPrefix + id) }
func corruptKey(id string) []byte { return []byte(corruptKeyPrefix + id) }

func (s *pebbleStore) Put(ctx context.Context, id string, b []byte, sync bool) error {
	if err := beginPut(ctx, id, s, s.health); err != nil {
		return err
	}
	defer s.exit()
	if f := s.failed.Load(); f != nil {
		return s.errf("put "+id, *f)
	}
	sync = sync || s.flush
	key := liveKey(id)
	if !sync || ctx.Done() == nil {
		return s.finishPut(id, s.set(key, b, sync), sync)
	}
	// pebble's commit cannot be interrupted: wait for it beside ctx.
	done := make(chan error, 1)
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		done <- s.set(key, b, sync)
	}()
	select {
	case err := <-done:
		return s.finishPut(id, err, sync)
	case <-ctx.Done():
		s.bg.Add(1)
		go func() {
			defer s.bg.Done()
			if <-done == nil {
				_ = s.guard(func(db *pebble.DB) error { return db.Delete(key, pebble.NoSync) })
			}
		}()
		return ctx.Err()
	}
}

func (s *pebbleStore) set(key, b []byte, sync bool) error {
	if !sync {
		return s.guard(func(db *pebble.DB) error { return db.Set(key, b, pebble.NoSync) })
	}
	if !s.group {
		s.syncMu.Lock()
		defer s.syncMu.Unlock()
	}
	return s.guard(func(db *pebble.DB) error { return db.Set(key, b, pebble.Sync) })
}

func (s *pebbleStore) finishPut(id string, err error, sync bool) error {
	if err != nil {
		return s.errf("put "+id, err)
	}
	s.puts.Add(1)
	if sync {
		s.syncedPuts.Add(1)
	}
	return nil
}

func (s *pebbleStore) Get(ctx context.Context, id string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := s.enter(); err != nil {
		return nil, s.errf("get "+id, err)
	}
	defer s.exit()
	if s.db == nil {
		return nil, s.errf("get "+id, *s.failed.Load())
	}
	v, closer, err := s.db.Get(liveKey(id))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, s.errf("get "+id, ErrNotFound)
	}
	if err != nil {
		return nil, s.errf("get "+id, err)
	}
	b := bytes.Clone(v)
	_ = closer.Close()
	return b, nil
}

func (s *pebbleStore) Remove(ctx context.Context, id string) error {
	if err := s.enter(); err != nil {
		return s.errf("remove "+id, err)
	}
	defer s.exit()
	if err := s.guard(func(db *pebble.DB) error { return db.Delete(liveKey(id), pebble.NoSync) }); err != nil {
		return s.errf("remove "+id, err)
	}
	return nil
}

func (s *pebbleStore) SetAside(ctx context.Context, id string) error {
	if err := s.enter(); err != nil {
		return s.errf("set aside "+id, err)
	}
	defer s.exit()
	err := s.guard(func(db *pebble.DB) error {
		v, closer, err := db.Get(liveKey(id))
		if errors.Is(err, pebble.ErrNotFound) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		batch := db.NewBatch()
		defer batch.Close()
		err = batch.Set(corruptKey(id), v, nil)
		_ = closer.Close()
		if err == nil {
			err = batch.Delete(liveKey(id), nil)
		}
		if err == nil {
			err = batch.Commit(pebble.Sync)
		}
		return err
	})
	if err != nil {
		return s.errf("set aside "+id, err)
	}
	return nil
}

func (s *pebbleStore) Enumerate(ctx context.Context, fn func(id string, b []byte) error) error {
	return s.iterate(ctx, true, fn)
}

func (s *pebbleStore) EnumerateIDs(ctx context.Context, fn func(id string) error) error {
	return s.iterate(ctx, false, func(id string, _ []byte) error { return fn(id) })
}

// iterate walks the live keys. The read lock is not held across fn (which
// may call back into s); bg keeps Close from closing the DB under the
// iterator.
func (s *pebbleStore) iterate(ctx context.Context, values bool, fn func(id string, b []byte) error) error {
	if err := s.enter(); err != nil {
		return s.errf("enumerate", err)
	}
	db := s.db
	if db == nil {
		s.exit()
		return s.errf("enumerate", *s.failed.Load())
	}
	s.bg.Add(1)
	s.exit()
	defer s.bg.Done()
	it, err := db.NewIterWithContext(ctx, &pebble.IterOptions{
		LowerBound: []byte(liveKeyPrefix),
		UpperBound: []byte("m0"), // the key after every "m/...": '0' follows '/'
	})
	if err != nil {
		return s.errf("enumerate", err)
	}
	defer it.Close()
	for valid := it.First(); valid; valid = it.Next() {
		if err := ctx.Err(); err != nil {
			return err
		}
		id := string(it.Key()[len(liveKeyPrefix):])
		var b []byte
		if values {
			v, err := it.ValueAndErr()
			if err != nil {
				s.log.Error().Err(err).Str("id", id).Msg("cannot read spool entry; skipped")
				continue
			}
			b = bytes.Clone(v)
		}
		if err := fn(id, b); err != nil {
			return err
		}
	}
	if err := it.Error(); err != nil {
		return s.errf("enumerate", err)
	}
	return nil
}

func (s *pebbleStore) Health() (bool, string) {
	if f := s.failed.Load(); f != nil {
		return false, s.errf("health", *f).Error()
	}
	if err := s.health.get(); err != nil {
		return false, err.Error()
	}
	if s.stalled.Load() {
		return false, "spool " + s.name + " write stall"
	}
	return true, ""
}

func (s *pebbleStore) Stats() Stats {
	return Stats{Puts: s.puts.Load(), SyncedPuts: s.syncedPuts.Load(), Syncs: s.syncs.Load()}
}

func (s *pebbleStore) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.quit)
	s.mu.Unlock()
	s.loops.Wait()
	s.bg.Wait()
	if s.db == nil {
		return nil
	}
	if err := closeDB(s.db); err != nil {
		return s.errf("close", err)
	}
	return nil
}

// pebbleLogger sends pebble's log lines to zerolog (its informational lines
// at debug level: they are chatty).
type pebbleLogger struct{ log zerolog.Logger }

func (l pebbleLogger) Infof(format string, args ...any) {
	l.log.Debug().Msgf("pebble: "+format, args...)
}

func (l pebbleLogger) Errorf(format string, args ...any) {
	l.log.Error().Msgf("pebble: "+format, args...)
}

// Fatalf is called by pebble on a broken invariant, and when its commit
// pipeline fails (a WAL append on a full disk); pebble expects it not to
// return. It panics with a *fatalError, which guard recovers when the call
// came from a write of ours.
func (l pebbleLogger) Fatalf(format string, args ...any) {
	if !strings.HasPrefix(format, "pebble: ") {
		format = "pebble: " + format
	}
	fe := &fatalError{msg: fmt.Sprintf(format, args...)}
	for _, a := range args {
		if err, ok := a.(error); ok {
			fe.err = err
			break
		}
	}
	l.log.Error().Msg(fe.msg)
	panic(fe)
}

// fatalError is what Fatalf panics with; it wraps the first error among
// Fatalf's arguments, so errors.Is(err, syscall.ENOSPC) works.
type fatalError struct {
	msg string
	err error
}

// asFatal returns the *fatalError a recovered panic carries, and panics
// again with anything else.
func asFatal(r any) *fatalError {
	fe, ok := r.(*fatalError)
	if !ok {
		panic(r)
	}
	return fe
}

func (e *fatalError) Error() string { return e.msg }
func (e *fatalError) Unwrap() error { return e.err }

// countingFS counts the syncs pebble makes (WAL, tables, manifest,
// directories) for Stats.
type countingFS struct {
	vfs.FS
	n *atomic.Uint64
}

func (c countingFS) wrap(f vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return nil, err
	}
	return countingFile{File: f, n: c.n}, nil
}

func (c countingFS) Create(name string, cat vfs.DiskWriteCategory) (vfs.File, error) {
	return c.wrap(c.FS.Create(name, cat))
}

func (c countingFS) OpenReadWrite(name string, cat vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	return c.wrap(c.FS.OpenReadWrite(name, cat, opts...))
}

func (c countingFS) ReuseForWrite(oldname, newname string, cat vfs.DiskWriteCategory) (vfs.File, error) {
	return c.wrap(c.FS.ReuseForWrite(oldname, newname, cat))
}

func (c countingFS) OpenDir(name string) (vfs.File, error) {
	return c.wrap(c.FS.OpenDir(name))
}

type countingFile struct {
	vfs.File
	n *atomic.Uint64
}

func (f countingFile) Sync() error {
	f.n.Add(1)
	return f.File.Sync()
}

func (f countingFile) SyncData() error {
	f.n.Add(1)
	return f.File.SyncData()
}

func (f countingFile) SyncTo(length int64) (bool, error) {
	full, err := f.File.SyncTo(length)
	if full {
		f.n.Add(1)
	}
	return full, err
}
