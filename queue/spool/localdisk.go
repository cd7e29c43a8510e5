package spool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/kumogo/kumogo/internal/config"
)

// localDisk is the LocalDisk Store.
type localDisk struct {
	name                              string
	root, newDir, dataDir, corruptDir string
	flush, group                      bool
	log                               zerolog.Logger
	health                            *health

	lockFile *os.File  // flocked for the store's lifetime
	syncer   *fsSyncer // group commit rounds; nil without group commit

	mu     sync.RWMutex // read-held by operations in flight, write-held by Close
	closed bool

	seq                     atomic.Uint64
	puts, syncedPuts, syncs atomic.Uint64
}

// openLocalDisk opens a LocalDisk store. With group commit it uses shared
// when that is not nil (it must be on the same file system) and otherwise
// starts a syncer of its own.
func openLocalDisk(cfg config.Spool, fl floors, log zerolog.Logger, group bool, shared *fsSyncer) (*localDisk, error) {
	root := filepath.Clean(cfg.Path)
	s := &localDisk{
		name:       cfg.Name,
		root:       root,
		newDir:     filepath.Join(root, "new"),
		dataDir:    filepath.Join(root, "data"),
		corruptDir: filepath.Join(root, "corrupt"),
		flush:      cfg.Flush,
		group:      group && haveSyncfs,
		log:        log,
		health:     newHealth(root, fl),
	}
	if err := os.MkdirAll(root, 0o750); err != nil {
		return nil, s.errf("create", err)
	}
	lock, err := s.acquireLock()
	if err != nil {
		return nil, err
	}
	s.lockFile = lock
	ok := false
	defer func() {
		if !ok {
			_ = s.lockFile.Close()
		}
	}()
	for _, d := range []string{s.newDir, s.dataDir, s.corruptDir} {
		if err := os.Mkdir(d, 0o750); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, s.errf("create", err)
		}
	}
	if err := s.cleanNew(); err != nil {
		return nil, err
	}
	if s.group {
		if shared != nil && shared.acquire() {
			s.syncer = shared
		} else if s.syncer, err = newFSSyncer(s.dataDir, log); err != nil {
			return nil, s.errf("open", err)
		}
	}
	ok = true
	s.log.Debug().Str("path", root).Bool("group_commit", s.group).Msg("spool opened")
	return s, nil
}

// errf annotates err with the spool name and operation.
func (s *localDisk) errf(op string, err error) error {
	return fmt.Errorf("spool %s (LocalDisk %s): %s: %w", s.name, s.root, op, err)
}

// acquireLock takes the flock on <path>/lock and writes our pid into it. A
// lock left by a process that died is released by the kernel, so it is
// simply taken over.
func (s *localDisk) acquireLock() (*os.File, error) {
	path := filepath.Join(s.root, "lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, s.errf("open lock", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		prev, _ := os.ReadFile(path)
		_ = f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("spool %s: %s is locked by another process (pid %s): is another kumogo already using this spool?",
				s.name, path, bytes.TrimSpace(prev))
		}
		return nil, s.errf("lock", err)
	}
	prev, _ := os.ReadFile(path)
	pid := strconv.Itoa(os.Getpid())
	if p := string(bytes.TrimSpace(prev)); p != "" && p != pid {
		s.log.Info().Str("path", path).Str("stale_pid", p).Msg("taking over spool lock left by a process that is gone")
	}
	if err := f.Truncate(0); err != nil {
		_ = f.Close()
		return nil, s.errf("write lock", err)
	}
	if _, err := f.WriteAt([]byte(pid+"\n"), 0); err != nil {
		_ = f.Close()
		return nil, s.errf("write lock", err)
	}
	return f, nil
}

// cleanNew removes temporary files left in new/ by a crash: they were
// never acknowledged (a write is acknowledged only once renamed into
// data/), so they may be torn.
func (s *localDisk) cleanNew() error {
	ents, err := os.ReadDir(s.newDir)
	if err != nil {
		return s.errf("clean new", err)
	}
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(s.newDir, e.Name())); err != nil {
			return s.errf("clean new", err)
		}
	}
	if len(ents) > 0 {
		s.log.Warn().Int("count", len(ents)).Msg("removed unfinished temporary spool files left by a crash")
	}
	return nil
}

// path returns the data file of id: data/aa/bb/cc/dd/rest.
func (s *localDisk) path(id string) string {
	return filepath.Join(s.dataDir, id[0:2], id[2:4], id[4:6], id[6:8], id[8:])
}

func (s *localDisk) enter() error {
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return ErrClosed
	}
	return nil
}

func (s *localDisk) exit() { s.mu.RUnlock() }

func (s *localDisk) Put(ctx context.Context, id string, b []byte, sync bool) error {
	return s.put(ctx, id, b, sync, false)
}

// put is Put; with staged, a group-committed write leaves its second round
// (the one that makes the name durable) to commit (stage.go).
func (s *localDisk) put(ctx context.Context, id string, b []byte, sync, staged bool) error {
	if err := beginPut(ctx, id, s, s.health); err != nil {
		return err
	}
	defer s.exit()
	sync = sync || s.flush
	f, tmp, err := s.createTemp(id, b)
	if err != nil {
		return s.errf("put "+id, err)
	}
	final := s.path(id)
	switch {
	case !sync:
		err = f.Close()
		if err == nil {
			_, err = s.place(tmp, final)
		}
	case !s.group:
		err = s.putFsync(f, tmp, final)
	default:
		return s.putGroup(ctx, id, f, tmp, final, staged)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return s.errf("put "+id, err)
	}
	s.puts.Add(1)
	if sync {
		s.syncedPuts.Add(1)
	}
	return nil
}

// createTemp writes b to a new temporary file in new/ and returns it open.
func (s *localDisk) createTemp(id string, b []byte) (*os.File, string, error) {
	tmp := filepath.Join(s.newDir, id+"."+strconv.FormatUint(s.seq.Add(1), 10))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return nil, "", err
	}
	if _, err := f.Write(b); err != nil {
		_ = f.Close()
		_ = os.Remove(tmp)
		return nil, "", err
	}
	return f, tmp, nil
}

// putFsync is a synchronous write without group commit: fsync of the file,
// rename, then fsync of its directory and of the parent of every directory
// created for it.
func (s *localDisk) putFsync(f *os.File, tmp, final string) error {
	err := f.Sync()
	s.syncs.Add(1)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	created, err := s.place(tmp, final)
	if err != nil {
		return err
	}
	dirs := []string{filepath.Dir(final)}
	for _, c := range created {
		if p := filepath.Dir(c); p != dirs[0] {
			dirs = append(dirs, p)
		}
	}
	for _, d := range dirs {
		if err := fsyncDir(d); err != nil {
			_ = os.Remove(final)
			return err
		}
		s.syncs.Add(1)
	}
	return nil
}

// putGroup makes a written temporary file durable under its final name
// with two shared syncfs rounds: the first makes its data durable, then it
// is renamed into place, and the second makes the rename (and any new
// directories) durable. The data is thus durable before the name is, so a
// crash never leaves a torn file under a final name. Renames are done by
// the writers themselves, in parallel; the committer only runs syncfs.
// With staged the second round is left to the caller's commit.
func (s *localDisk) putGroup(ctx context.Context, id string, f *os.File, tmp, final string, staged bool) error {
	// The data stays dirty in the page cache until the round's syncfs.
	if err := f.Close(); err != nil {
		_ = os.Remove(tmp)
		return s.errf("put "+id, err)
	}
	if err := s.syncer.round(ctx); err != nil {
		_ = os.Remove(tmp)
		return s.roundErr(id, err)
	}
	if _, err := s.place(tmp, final); err != nil {
		_ = os.Remove(tmp)
		return s.errf("put "+id, err)
	}
	if staged {
		s.puts.Add(1)
		s.syncedPuts.Add(1)
		return nil
	}
	if err := s.syncer.round(ctx); err != nil {
		// Not acknowledged: take it back. If a crash makes the rename
		// durable but not the unlink, the message is delivered although
		// the client was told it failed: a duplicate, never a loss.
		_ = s.removePath(final)
		return s.roundErr(id, err)
	}
	s.puts.Add(1)
	s.syncedPuts.Add(1)
	return nil
}

func (s *localDisk) roundErr(id string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return s.errf("put "+id, err)
}

// place renames tmp to final, creating final's directories first: nearly
// every message has a leaf directory of its own, so trying the rename
// first would nearly always fail. A concurrent Remove may delete an empty
// directory at any time, so a missing directory is retried a few times.
// It returns the directories it created.
func (s *localDisk) place(tmp, final string) ([]string, error) {
	var created []string
	dir := filepath.Dir(final)
	var err error
	for i := 0; i < 4; i++ {
		if err = mkdirs(dir, s.dataDir, &created); err != nil {
			return created, err
		}
		if err = os.Rename(tmp, final); err == nil || !errors.Is(err, fs.ErrNotExist) {
			return created, err
		}
	}
	return created, err
}

// mkdirs is os.MkdirAll below stop that records the directories it made.
func mkdirs(dir, stop string, created *[]string) error {
	err := os.Mkdir(dir, 0o750)
	if err == nil {
		*created = append(*created, dir)
		return nil
	}
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if !errors.Is(err, fs.ErrNotExist) || dir == stop || len(dir) <= len(stop) {
		return err
	}
	if err := mkdirs(filepath.Dir(dir), stop, created); err != nil {
		return err
	}
	err = os.Mkdir(dir, 0o750)
	if err == nil {
		*created = append(*created, dir)
		return nil
	}
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	return err
}

func fsyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

func (s *localDisk) Get(ctx context.Context, id string) ([]byte, error) {
	if err := checkName(id); err != nil {
		return nil, s.errf("get", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := s.enter(); err != nil {
		return nil, s.errf("get "+id, err)
	}
	defer s.exit()
	b, err := os.ReadFile(s.path(id))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, s.errf("get "+id, ErrNotFound)
	}
	if err != nil {
		return nil, s.errf("get "+id, err)
	}
	return b, nil
}

func (s *localDisk) Remove(ctx context.Context, id string) error {
	if err := checkName(id); err != nil {
		return s.errf("remove", err)
	}
	if err := s.enter(); err != nil {
		return s.errf("remove "+id, err)
	}
	defer s.exit()
	if err := s.removePath(s.path(id)); err != nil {
		return s.errf("remove "+id, err)
	}
	return nil
}

// removePath unlinks a data file and then the directories above it that
// became empty (nearly every message has a leaf directory of its own).
func (s *localDisk) removePath(p string) error {
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	s.pruneDirs(filepath.Dir(p))
	return nil
}

// pruneDirs removes dir and its parents up to data/ while they are empty.
func (s *localDisk) pruneDirs(dir string) {
	for i := 0; i < 4 && len(dir) > len(s.dataDir); i++ {
		if os.Remove(dir) != nil {
			return
		}
		dir = filepath.Dir(dir)
	}
}

func (s *localDisk) SetAside(ctx context.Context, id string) error {
	if err := checkName(id); err != nil {
		return s.errf("set aside", err)
	}
	if err := s.enter(); err != nil {
		return s.errf("set aside "+id, err)
	}
	defer s.exit()
	p := s.path(id)
	if _, err := os.Lstat(p); errors.Is(err, fs.ErrNotExist) {
		return s.errf("set aside "+id, ErrNotFound)
	}
	if err := s.moveToCorrupt(p, id); err != nil {
		return s.errf("set aside "+id, err)
	}
	s.pruneDirs(filepath.Dir(p))
	return nil
}

// moveToCorrupt renames p into corrupt/ as name, adding a numeric suffix if
// that name is taken.
func (s *localDisk) moveToCorrupt(p, name string) error {
	dst := filepath.Join(s.corruptDir, name)
	for i := 1; ; i++ {
		if _, err := os.Lstat(dst); errors.Is(err, fs.ErrNotExist) {
			break
		}
		dst = filepath.Join(s.corruptDir, name+"."+strconv.Itoa(i))
	}
	return os.Rename(p, dst)
}

func (s *localDisk) Enumerate(ctx context.Context, fn func(id string, b []byte) error) error {
	return s.walk(ctx, true, fn)
}

func (s *localDisk) EnumerateIDs(ctx context.Context, fn func(id string) error) error {
	return s.walk(ctx, false, func(id string, _ []byte) error { return fn(id) })
}

func isHexByte(s string) bool {
	if len(s) != 2 {
		return false
	}
	for i := 0; i < 2; i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func (s *localDisk) Health() (bool, string) {
	if err := s.health.get(); err != nil {
		return false, err.Error()
	}
	return true, ""
}

func (s *localDisk) Stats() Stats {
	st := Stats{Puts: s.puts.Load(), SyncedPuts: s.syncedPuts.Load(), Syncs: s.syncs.Load()}
	if s.syncer != nil {
		st.Syncs += s.syncer.syncs.Load()
	}
	return st
}

func (s *localDisk) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	// No Put is in flight any more (they hold the read lock).
	var err error
	if s.syncer != nil {
		err = s.syncer.release()
	}
	// Closing the lock file releases the flock. The file itself stays: an
	// unlink could let two later processes lock two different files.
	if cerr := s.lockFile.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return s.errf("close", err)
	}
	return nil
}
