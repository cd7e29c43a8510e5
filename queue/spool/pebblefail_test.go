package spool

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/kumogo/kumogo/internal/message"
)

// fullFS is a file system whose writes fail with ENOSPC while full is set,
// as a disk that has run out of space.
type fullFS struct {
	vfs.FS
	full *atomic.Bool
}

func (f fullFS) wrap(file vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return nil, err
	}
	return fullFile{File: file, full: f.full}, nil
}

func (f fullFS) Create(name string, cat vfs.DiskWriteCategory) (vfs.File, error) {
	if f.full.Load() {
		return nil, &os.PathError{Op: "open", Path: name, Err: syscall.ENOSPC}
	}
	return f.wrap(f.FS.Create(name, cat))
}

func (f fullFS) OpenReadWrite(name string, cat vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	return f.wrap(f.FS.OpenReadWrite(name, cat, opts...))
}

func (f fullFS) ReuseForWrite(oldname, newname string, cat vfs.DiskWriteCategory) (vfs.File, error) {
	return f.wrap(f.FS.ReuseForWrite(oldname, newname, cat))
}

type fullFile struct {
	vfs.File
	full *atomic.Bool
}

func (f fullFile) Write(p []byte) (int, error) {
	if f.full.Load() {
		return 0, &os.PathError{Op: "write", Path: "spool", Err: syscall.ENOSPC}
	}
	return f.File.Write(p)
}

func (f fullFile) WriteAt(p []byte, off int64) (int, error) {
	if f.full.Load() {
		return 0, &os.PathError{Op: "write", Path: "spool", Err: syscall.ENOSPC}
	}
	return f.File.WriteAt(p, off)
}

// TestPebbleDiskFullIsAnErrorNotACrash: when pebble's WAL append fails
// (ENOSPC), pebble calls Fatalf; the store must turn that into an error for
// the writer (not a panic that kills the daemon), report itself unhealthy,
// keep serving reads, and reopen by itself once writes work again, with
// every write acknowledged before the failure intact.
func TestPebbleDiskFullIsAnErrorNotACrash(t *testing.T) {
	dir := t.TempDir()
	cfg := spoolCfg("data", KindRocksDB, dir)
	fl, err := parseFloors(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var full atomic.Bool
	s, err := openPebbleFS(cfg, fl, testLog(t), true, fullFS{FS: vfs.Default, full: &full}, 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	gen := message.NewIDGenerator()
	body := func(i int) []byte { return bytes.Repeat([]byte{byte('a' + i%26)}, 10_000+i) }
	var acked []string
	for i := 0; i < 20; i++ {
		id := newID(gen)
		if err := s.Put(ctx, id, body(i), true); err != nil {
			t.Fatal(err)
		}
		acked = append(acked, id)
	}

	full.Store(true)
	err = s.Put(ctx, newID(gen), body(99), true)
	if err == nil || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("put on a full disk: %v, want an error wrapping ENOSPC", err)
	}
	if ok, why := s.Health(); ok || !strings.Contains(why, "not accepting writes") {
		t.Fatalf("health of a failed store: %v %q", ok, why)
	}
	// later writes fail at once, reads still work
	if err := s.Put(ctx, newID(gen), body(98), true); err == nil {
		t.Fatal("a failed store accepted a write")
	}
	if err := s.Remove(ctx, acked[0]); err == nil {
		t.Fatal("a failed store accepted a removal")
	}
	if b, err := s.Get(ctx, acked[3]); err != nil || !bytes.Equal(b, body(3)) {
		t.Fatalf("read from a failed store: %v", err)
	}

	full.Store(false)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if ok, _ := s.Health(); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the store did not reopen once the disk had space again")
		}
		time.Sleep(20 * time.Millisecond)
	}
	id := newID(gen)
	if err := s.Put(ctx, id, body(20), true); err != nil {
		t.Fatalf("put after the reopen: %v", err)
	}
	acked = append(acked, id)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// everything acknowledged, before and after the failure, is on disk
	s2, err := openPebble(cfg, fl, testLog(t), true)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	for i, id := range acked {
		b, err := s2.Get(ctx, id)
		if err != nil || !bytes.Equal(b, body(i)) {
			t.Fatalf("acknowledged message %d (%s) after the failure and a restart: %v", i, id, err)
		}
	}
}
