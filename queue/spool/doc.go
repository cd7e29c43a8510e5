// Package spool is kumogo's durable message storage: KumoMTA's two named
// spools ("data" for the raw message bytes, "meta" for the envelope and
// metadata), group commit of synchronous writes, free-space floors and
// enumeration of what is left on disk after a restart.
//
// # Kinds
//
// Open picks the implementation from config.Spool.Kind:
//
//   - "LocalDisk" (the default) keeps one file per message in KumoMTA's
//     layout: <path>/new holds temporary files, <path>/data/aa/bb/cc/dd/rest
//     holds the stored entries (aa..dd are the four bytes of the v1 UUID's
//     time_low field, rest is the remaining 24 hex digits of the id), and
//     <path>/lock holds the pid of the owning process under an exclusive
//     flock(2), so a second daemon on the same spool fails at Open. A write
//     goes to a temporary file in new/ and is renamed into place, so a
//     reader never sees half a file; temporary files left by a crash are
//     removed at Open. Entries set aside as corrupt go to <path>/corrupt.
//   - "RocksDB" is served by github.com/cockroachdb/pebble/v2, an LSM store
//     written in Go with a write-ahead log, RocksDB's on-disk design and no
//     cgo requirement. v2 (v2.1.7) is used rather than v1.1.5: both build
//     with Go 1.26, but v2 is the maintained line and its dependencies are
//     kept current with new Go releases. Live entries are keys "m/<id>";
//     corrupt entries are moved to "c/<id>". rocks_params is accepted and
//     ignored: its keys are RocksDB tuning knobs without a pebble
//     equivalent.
//
// # Durability and group commit
//
// Store.Put with sync=true returns only when the entry is on stable
// storage, not merely in the page cache. Concurrent synchronous writers
// share the cost of that by group commit:
//
//   - LocalDisk: a committer goroutine runs syncfs(2) rounds on the
//     spool's file system. A synchronous Put writes its temporary file,
//     joins the next round and waits (its data is then durable), renames
//     the file into place, and joins the next round again (the rename and
//     any directory it created are then durable). Every writer that arrives
//     while a round runs joins the following one, so one syncfs serves them
//     all, and the renames run in the writers, in parallel. Data is durable
//     before its name, so a crash never leaves a torn file under a final
//     name. syncfs is used rather than fsync of each file and directory
//     because the fanned-out layout creates a fresh leaf directory for
//     nearly every message: per-message durability costs an fsync of the
//     file, of the leaf directory and of its parent (about four flushes
//     per message, measured), while a shared round costs one. syncfs also
//     flushes unrelated dirty data on the same file system, so the spool is
//     best kept on a file system of its own. The data and meta spools of
//     one file system share their rounds (OpenSpools). Where syncfs does not exist,
//     each write fsyncs its own file and directories.
//   - RocksDB: each write is one pebble batch committed with Sync; pebble's
//     commit pipeline already gathers the WAL records of concurrent
//     committers and covers them with one WAL fsync.
//
// Stage and Commit split a synchronous Save in two (stage.go): Stage does
// every flush but the last, and one Commit does the last for every message
// staged before it, so that the queue can sync a message's log record in
// the same round as the message.
//
// KumoMTA's default is flush=false: no fsync unless msg:set_force_sync, so
// a 250 there does not mean the message survives a power loss. kumogo
// accepts a message only when it is durable, so the daemon passes sync=true
// for every spooled message (the queue's NoSync option turns that off for
// benchmarks); a spool defined with flush=true syncs every write whatever
// the caller passes. Removals are never synced: a removal lost to a crash
// means at worst a duplicate delivery, never a lost message.
//
// # Floors and health
//
// min_free_space and min_free_inodes ("10%" by default, or absolute values
// such as "2GB" or "100000") are checked with statfs(2) on the spool path,
// at most once a second. Below a floor Health reports the reason and Put
// fails at once with an error wrapping ErrDiskFull whose text says the disk
// is too full. A pebble write stall also makes the RocksDB kind unhealthy.
//
// A floor is a margin, not a guarantee: the disk can still fill up. A
// LocalDisk write then fails with ENOSPC and removes its partial file. A
// RocksDB write whose WAL append fails breaks pebble's commit pipeline,
// which pebble reports with Fatalf (a panic); the store recovers that in
// the writing goroutine, answers the write with an error wrapping ENOSPC,
// stops taking writes (Health reports it) and reopens the DB, replaying
// its WAL, once the file system is back above its floors. Reads keep
// working meanwhile.
//
// # Messages
//
// Spools combines a data and a meta Store: Save writes both parts
// concurrently and removes both if either fails; the meta record is the JSON
// object {"sender", "recipient" (string or array), "meta", "schedule"}.
// Enumerate yields every stored message and sets aside (never deletes, never
// panics on) entries that cannot be loaded.
package spool
