package spool

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/rs/zerolog"

	"github.com/kumogo/kumogo/internal/config"
)

// Kinds of spool accepted by Open (KumoMTA's names).
const (
	KindLocalDisk = "LocalDisk"
	KindRocksDB   = "RocksDB"
)

var (
	// ErrNotFound is returned (wrapped) by Get for an id that is not
	// stored. It has a NotFound method, so that packages that may not
	// import this one (the queue) can recognise it.
	ErrNotFound error = notFoundError{}
	// ErrDiskFull is returned (wrapped) by Put when the spool's file system
	// is below its min_free_space or min_free_inodes floor.
	ErrDiskFull = errors.New("disk is too full")
	// ErrClosed is returned by operations on a closed Store or Spools.
	ErrClosed = errors.New("spool is closed")
	// ErrBadID is returned for an id that cannot name a spool entry.
	ErrBadID = errors.New("invalid spool id")
)

// Store is one named spool: a durable map from spool id to bytes. All
// methods are safe for concurrent use.
type Store interface {
	// Put stores b under id, replacing any previous value. With sync (or a
	// spool defined with flush=true) it returns only once the entry is on
	// stable storage. If ctx ends first, Put returns ctx.Err() and the
	// entry must be treated as not stored (it is removed if it got written).
	Put(ctx context.Context, id string, b []byte, sync bool) error
	// Get returns the bytes stored under id, or an error wrapping
	// ErrNotFound.
	Get(ctx context.Context, id string) ([]byte, error)
	// Remove deletes id. Removing an id that is not stored is not an error.
	// Removals are not synced.
	Remove(ctx context.Context, id string) error
	// Enumerate calls fn for every stored entry, in no particular order,
	// until fn returns an error (which Enumerate then returns). fn owns b.
	// fn may Put, Remove or SetAside entries, including the current one.
	Enumerate(ctx context.Context, fn func(id string, b []byte) error) error
	// EnumerateIDs is Enumerate without reading the values.
	EnumerateIDs(ctx context.Context, fn func(id string) error) error
	// SetAside moves the entry out of the live spool into the corrupt area
	// (<path>/corrupt for LocalDisk, key prefix "c/" for RocksDB) so that
	// it is kept for inspection but never enumerated again.
	SetAside(ctx context.Context, id string) error
	// Health reports whether the spool accepts writes and, when it does
	// not, why (for example "disk is too full"). It is cheap: the file
	// system is checked at most about once a second.
	Health() (ok bool, reason string)
	// Stats returns counters for metrics and benchmarks.
	Stats() Stats
	// Close waits for pending writes and releases the spool.
	Close() error
}

// Stats are cumulative counters of a Store.
type Stats struct {
	// Puts counts successful Put calls, SyncedPuts those made with sync.
	Puts, SyncedPuts uint64
	// Syncs counts flushes to stable storage: syncfs and fsync calls for
	// LocalDisk (the rounds of a syncer shared by the data and meta spools
	// are counted in both), every Sync of a pebble file (WAL, tables,
	// manifest) for RocksDB.
	Syncs uint64
}

// Open opens (creating if needed) the spool described by cfg. The kind is
// cfg.Kind: "LocalDisk" (also when empty) or "RocksDB".
func Open(cfg config.Spool, log zerolog.Logger) (Store, error) {
	return open(cfg, log, true)
}

// open is Open with the group commit optionally disabled (each synchronous
// Put then does its own flushes), for benchmarks.
func open(cfg config.Spool, log zerolog.Logger, groupCommit bool) (Store, error) {
	return openShared(cfg, log, groupCommit, nil)
}

// openShared is open with a LocalDisk group-commit syncer shared with
// another store on the same file system (nil: a syncer of its own).
func openShared(cfg config.Spool, log zerolog.Logger, groupCommit bool, shared *fsSyncer) (Store, error) {
	if cfg.Path == "" {
		return nil, fmt.Errorf("spool %q: path is required", cfg.Name)
	}
	floors, err := parseFloors(cfg)
	if err != nil {
		return nil, fmt.Errorf("spool %q: %w", cfg.Name, err)
	}
	log = log.With().Str("spool", cfg.Name).Logger()
	switch cfg.Kind {
	case "", KindLocalDisk:
		return openLocalDisk(cfg, floors, log, groupCommit, shared)
	case KindRocksDB:
		return openPebble(cfg, floors, log, groupCommit)
	default:
		return nil, fmt.Errorf("spool %q: unknown kind %q (want %s or %s)", cfg.Name, cfg.Kind, KindLocalDisk, KindRocksDB)
	}
}

// checkID verifies that id is a spool id: 32 lowercase hex digits (a v1
// UUID without dashes), the only form kumogo generates.
func checkID(id string) error {
	if len(id) != 32 {
		return fmt.Errorf("%w %q: want 32 hex digits", ErrBadID, id)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return fmt.Errorf("%w %q: want 32 lowercase hex digits", ErrBadID, id)
		}
	}
	return nil
}

// checkName verifies that id can name an existing entry: ids read back from
// disk are not necessarily valid spool ids, but they must at least be safe
// to turn into a path.
func checkName(id string) error {
	if len(id) < 9 || strings.ContainsAny(id, "/\\\x00") || id[8:] == "." || id[8:] == ".." {
		return fmt.Errorf("%w %q", ErrBadID, id)
	}
	for i := 0; i < 8; i++ {
		c := id[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return fmt.Errorf("%w %q", ErrBadID, id)
		}
	}
	return nil
}

type notFoundError struct{}

func (notFoundError) Error() string  { return "not found in spool" }
func (notFoundError) NotFound() bool { return true }
