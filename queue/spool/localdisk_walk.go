package spool

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"
)

// A LocalDisk spool keeps each entry in data/aa/bb/cc/dd/rest, and ids
// that follow each other differ in their first hex digits (a v1 UUID
// starts with the low bits of its time), so nearly every entry has a leaf
// directory of its own. A restart that lists and reads them one by one
// waits on one directory listing and one file at a time. The walk below
// splits the tree at data/aa/bb and lets several workers list and read
// their parts at once (more workers than cores: on a cold cache they wait
// on the disk, which serves several requests at once), with directory
// listings through getdents and files opened relative to their directory,
// without os.ReadDir's sorting and per-entry values or os.ReadFile's stat.
// The callback still runs on one goroutine, as Store.Enumerate promises.
//
// What the walk changes on disk is what the serial walk changed: entries
// that do not fit the layout go to corrupt/, and directories found empty
// are removed (a concurrent Put retries when its directory vanishes, see
// place). A directory that held anything is no longer asked to go away.

// walkFound is one entry a worker found: its id and, when reading, its
// content.
type walkFound struct {
	id string
	b  []byte
}

// walkBatch is how many entries a worker hands over at once.
const walkBatch = 128

func walkWorkers() int { return min(max(4*runtime.GOMAXPROCS(0), 8), 32) }

// walkSub is a directory data/aa/bb that one worker walks.
type walkSub struct{ dir, prefix string }

// walk calls fn, on the calling goroutine, for every data file with its
// content when read is set. fn's error stops the walk and is returned.
func (s *localDisk) walk(ctx context.Context, read bool, fn func(id string, b []byte) error) error {
	// The read lock is not held across fn, which may call back into s.
	if err := s.enter(); err != nil {
		return s.errf("enumerate", err)
	}
	s.exit()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	fail := func(err error) { cancel(err) }

	subs := make(chan walkSub, 64)
	out := make(chan []walkFound, 8)
	var wg sync.WaitGroup
	var strayMu sync.Mutex // moveToCorrupt picks a free name: one at a time
	for range walkWorkers() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := &walker{s: s, ctx: ctx, read: read, out: out, strayMu: &strayMu, fail: fail}
			for sub := range subs {
				if ctx.Err() != nil {
					continue // drain
				}
				w.dir(unix.AT_FDCWD, "", sub.dir, sub.prefix, 2)
			}
			w.flush()
		}()
	}
	go func() {
		w := &walker{s: s, ctx: ctx, strayMu: &strayMu, fail: fail}
		tops := w.top(subs)
		close(subs)
		wg.Wait()
		if ctx.Err() == nil {
			for _, p := range tops {
				_ = unix.Rmdir(p) // only succeeds when the walk left it empty
			}
		}
		close(out)
	}()
	var fnErr error
	for batch := range out {
		if fnErr != nil || ctx.Err() != nil {
			continue // drain until the workers stop
		}
		for _, f := range batch {
			if fnErr = fn(f.id, f.b); fnErr != nil {
				cancel(fnErr)
				break
			}
		}
	}
	if fnErr != nil {
		return fnErr
	}
	if cause := context.Cause(ctx); cause != nil {
		return cause
	}
	return nil
}

// walker lists and reads one part of the tree.
type walker struct {
	s       *localDisk
	ctx     context.Context
	read    bool
	out     chan<- []walkFound
	strayMu *sync.Mutex
	fail    func(error)

	batch   []walkFound
	dents   []byte // getdents buffer
	scratch []byte // file read buffer
}

// top lists data/ and each data/aa, and hands the data/aa/bb directories
// to the workers. It returns the data/aa directories it handed out.
func (w *walker) top(subs chan<- walkSub) (tops []string) {
	d := w.s.dataDir
	ents, err := w.list(d)
	if err != nil {
		w.fail(w.s.errf("enumerate", err))
		return nil
	}
	for _, e := range ents {
		p := filepath.Join(d, e.name)
		if !w.isDir(p, e) || !isHexByte(e.name) {
			w.stray(p, "", e.name)
			continue
		}
		sub, err := w.list(p)
		if errors.Is(err, unix.ENOENT) {
			continue
		}
		if err != nil {
			w.fail(w.s.errf("enumerate", err))
			return tops
		}
		if len(sub) == 0 {
			_ = unix.Rmdir(p) // empty: may go, as in pruneDirs
			continue
		}
		tops = append(tops, p)
		for _, e2 := range sub {
			p2 := filepath.Join(p, e2.name)
			if !w.isDir(p2, e2) || !isHexByte(e2.name) {
				w.stray(p2, e.name, e2.name)
				continue
			}
			select {
			case subs <- walkSub{p2, e.name + e2.name}:
			case <-w.ctx.Done():
				return tops
			}
		}
	}
	return tops
}

// dir walks the directory name in the directory pfd (whose path is
// parent; pfd may be unix.AT_FDCWD with a full path as name) at depth
// (data/ is 0), with the id prefix its path spells. Directories are opened
// relative to their parent and files relative to their directory, so the
// kernel resolves one name each time, and paths are made only for
// messages. It reports whether the directory was left empty and removed.
func (w *walker) dir(pfd int, parent, name, prefix string, depth int) (removed bool) {
	path := func() string { return filepath.Join(parent, name) }
	fd, err := unix.Openat(pfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return true
	}
	if err != nil {
		w.fail(w.s.errf("enumerate", fmt.Errorf("open %s: %w", path(), err)))
		return false
	}
	defer unix.Close(fd)
	ents, err := w.listFD(fd)
	if err != nil {
		w.fail(w.s.errf("enumerate", fmt.Errorf("list %s: %w", path(), err)))
		return false
	}
	left := len(ents)
	for _, e := range ents {
		if w.ctx.Err() != nil {
			break
		}
		switch {
		case depth < 4 && isHexByte(e.name) && w.isDirAt(fd, e):
			if w.dir(fd, path(), e.name, prefix+e.name, depth+1) {
				left--
			}
		case depth == 4 && w.isRegularAt(fd, e):
			if !w.read {
				w.emit(walkFound{id: prefix + e.name})
				continue
			}
			b, err := w.readAt(fd, e.name)
			if errors.Is(err, unix.ENOENT) {
				left--
				continue // removed meanwhile
			}
			if err != nil {
				w.s.log.Error().Err(err).Str("id", prefix+e.name).Msg("cannot read spool entry; skipped")
				continue
			}
			w.emit(walkFound{id: prefix + e.name, b: b})
		default:
			if w.stray(filepath.Join(path(), e.name), prefix, e.name) {
				left--
			}
		}
	}
	if left == 0 && w.ctx.Err() == nil {
		return unix.Unlinkat(pfd, name, unix.AT_REMOVEDIR) == nil
	}
	return false
}

// stray moves an entry that does not fit the layout to corrupt/; it
// reports whether it is gone.
func (w *walker) stray(p, prefix, name string) bool {
	flat := "stray-" + prefix + "-" + name
	w.s.log.Warn().Str("path", p).Str("as", flat).Msg("entry does not fit the spool layout; moved to corrupt")
	w.strayMu.Lock()
	err := w.s.moveToCorrupt(p, flat)
	w.strayMu.Unlock()
	if err != nil {
		w.s.log.Error().Err(err).Str("path", p).Msg("cannot move stray spool entry")
		return false
	}
	return true
}

func (w *walker) emit(f walkFound) {
	if w.batch == nil {
		w.batch = make([]walkFound, 0, walkBatch)
	}
	w.batch = append(w.batch, f)
	if len(w.batch) == walkBatch {
		w.flush()
	}
}

func (w *walker) flush() {
	if len(w.batch) == 0 {
		return
	}
	select {
	case w.out <- w.batch:
	case <-w.ctx.Done():
	}
	w.batch = nil
}

// readAt reads the file name in the directory dfd into a slice of its
// own. The files are immutable once in data/ (written in new/ and renamed).
func (w *walker) readAt(dfd int, name string) ([]byte, error) {
	fd, err := unix.Openat(dfd, name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	if w.scratch == nil {
		w.scratch = make([]byte, 16<<10)
	}
	n := 0
	for {
		if n == len(w.scratch) {
			w.scratch = append(w.scratch, make([]byte, len(w.scratch))...)
		}
		m, err := unix.Read(fd, w.scratch[n:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if m == 0 {
			break
		}
		n += m
	}
	return append([]byte(nil), w.scratch[:n]...), nil
}

// dirent is one directory entry: its name and its type as the directory
// listing gives it (typUnknown when the file system does not say).
type dirent struct {
	name string
	typ  direntType
}

type direntType uint8

const (
	typUnknown direntType = iota
	typDir
	typReg
	typOther
)

func (w *walker) isDirAt(fd int, e dirent) bool {
	if e.typ != typUnknown {
		return e.typ == typDir
	}
	var st unix.Stat_t
	return unix.Fstatat(fd, e.name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR
}

func (w *walker) isRegularAt(fd int, e dirent) bool {
	if e.typ != typUnknown {
		return e.typ == typReg
	}
	var st unix.Stat_t
	return unix.Fstatat(fd, e.name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFREG
}

func (w *walker) isDir(p string, e dirent) bool {
	if e.typ != typUnknown {
		return e.typ == typDir
	}
	var st unix.Stat_t
	return unix.Lstat(p, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR
}

// list returns the entries of the directory at path.
func (w *walker) list(path string) ([]dirent, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	return w.listFD(fd)
}
