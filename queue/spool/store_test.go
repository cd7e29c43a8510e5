package spool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/message"
)

var kinds = []string{KindLocalDisk, KindRocksDB}

func testLog(t testing.TB) zerolog.Logger {
	if testing.Verbose() {
		return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.DebugLevel)
	}
	return zerolog.Nop()
}

func spoolCfg(name, kind, path string) config.Spool {
	return config.Spool{Name: name, Kind: kind, Path: path, MinFreeSpace: "0%", MinFreeInodes: "0%"}
}

func openStore(t testing.TB, cfg config.Spool) Store {
	t.Helper()
	s, err := Open(cfg, testLog(t))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func newID(gen *message.IDGenerator) string {
	id, _ := gen.New()
	return id
}

func TestStoreBasics(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			s := openStore(t, spoolCfg("data", kind, dir))
			gen := message.NewIDGenerator()
			want := map[string][]byte{}
			for i := 0; i < 20; i++ {
				id := newID(gen)
				b := []byte(fmt.Sprintf("entry %d %s", i, strings.Repeat("x", i*100)))
				if err := s.Put(ctx, id, b, i%2 == 0); err != nil {
					t.Fatalf("Put: %v", err)
				}
				want[id] = b
			}
			for id, b := range want {
				got, err := s.Get(ctx, id)
				if err != nil || !bytes.Equal(got, b) {
					t.Fatalf("Get(%s) = %q, %v", id, got, err)
				}
			}
			// replace
			var first string
			for id := range want {
				first = id
				break
			}
			if err := s.Put(ctx, first, []byte("replaced"), true); err != nil {
				t.Fatal(err)
			}
			want[first] = []byte("replaced")

			missing := newID(gen)
			if _, err := s.Get(ctx, missing); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Get missing: %v, want ErrNotFound", err)
			}
			if err := s.Remove(ctx, missing); err != nil {
				t.Fatalf("Remove missing: %v", err)
			}
			if err := s.Put(ctx, "../../etc/passwd", []byte("x"), false); !errors.Is(err, ErrBadID) {
				t.Fatalf("Put bad id: %v", err)
			}
			removed := 0
			for id := range want {
				if removed == 5 {
					break
				}
				if err := s.Remove(ctx, id); err != nil {
					t.Fatal(err)
				}
				delete(want, id)
				removed++
			}
			check := func(s Store) {
				t.Helper()
				got := map[string][]byte{}
				if err := s.Enumerate(ctx, func(id string, b []byte) error {
					got[id] = b
					return nil
				}); err != nil {
					t.Fatal(err)
				}
				if len(got) != len(want) {
					t.Fatalf("enumerated %d entries, want %d", len(got), len(want))
				}
				for id, b := range want {
					if !bytes.Equal(got[id], b) {
						t.Fatalf("entry %s = %q, want %q", id, got[id], b)
					}
				}
				n := 0
				if err := s.EnumerateIDs(ctx, func(id string) error {
					if _, ok := want[id]; !ok {
						t.Errorf("unexpected id %s", id)
					}
					n++
					return nil
				}); err != nil || n != len(want) {
					t.Fatalf("EnumerateIDs: %d ids, %v", n, err)
				}
			}
			check(s)
			stop := errors.New("stop")
			if err := s.Enumerate(ctx, func(string, []byte) error { return stop }); !errors.Is(err, stop) {
				t.Fatalf("Enumerate error = %v, want fn's error", err)
			}
			if st := s.Stats(); st.Puts != 21 || st.SyncedPuts != 11 || st.Syncs == 0 {
				t.Errorf("stats = %+v", st)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if err := s.Put(ctx, newID(gen), []byte("x"), false); !errors.Is(err, ErrClosed) {
				t.Fatalf("Put after Close: %v", err)
			}
			s = openStore(t, spoolCfg("data", kind, dir))
			defer s.Close()
			check(s)
		})
	}
}

func TestLocalDiskLayout(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openStore(t, spoolCfg("data", KindLocalDisk, dir))
	defer s.Close()
	id := newID(message.NewIDGenerator())
	if err := s.Put(ctx, id, []byte("hello"), true); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "data", id[0:2], id[2:4], id[4:6], id[6:8], id[8:])
	if b, err := os.ReadFile(p); err != nil || string(b) != "hello" {
		t.Fatalf("data file %s: %q, %v", p, b, err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "lock")); err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(os.Getpid()) {
		t.Fatalf("lock file = %q, %v; want our pid", b, err)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "new")); len(ents) != 0 {
		t.Fatalf("new/ holds %d files after a Put", len(ents))
	}
	if err := s.Remove(ctx, id); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "data")); len(ents) != 0 {
		t.Fatalf("empty directories left after Remove: %v", ents)
	}
}

func TestLocalDiskTornTempFilesCleaned(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openStore(t, spoolCfg("data", KindLocalDisk, dir))
	gen := message.NewIDGenerator()
	good := newID(gen)
	if err := s.Put(ctx, good, []byte("complete"), true); err != nil {
		t.Fatal(err)
	}
	s.Close()
	// What a crash mid-write leaves: partial temporary files.
	for i := 0; i < 3; i++ {
		if err := os.WriteFile(filepath.Join(dir, "new", newID(gen)+"."+strconv.Itoa(i)), []byte("Subject: torn\r\n\r\nhal"), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	s = openStore(t, spoolCfg("data", KindLocalDisk, dir))
	defer s.Close()
	if ents, _ := os.ReadDir(filepath.Join(dir, "new")); len(ents) != 0 {
		t.Fatalf("torn temporary files not cleaned: %d left", len(ents))
	}
	var ids []string
	if err := s.EnumerateIDs(ctx, func(id string) error { ids = append(ids, id); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(ids) != 1 || ids[0] != good {
		t.Fatalf("enumerated %v, want only %s", ids, good)
	}
}

func TestLocalDiskLock(t *testing.T) {
	dir := t.TempDir()
	cfg := spoolCfg("data", KindLocalDisk, dir)
	s := openStore(t, cfg)
	_, err := Open(cfg, testLog(t))
	if err == nil || !strings.Contains(err.Error(), "locked by another process") || !strings.Contains(err.Error(), strconv.Itoa(os.Getpid())) {
		t.Fatalf("second Open: %v; want a lock error naming pid %d", err, os.Getpid())
	}
	s.Close()
	s = openStore(t, cfg) // released by Close
	s.Close()

	// A lock file left by a process that died is taken over.
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skip("cannot run true:", err)
	}
	dead := cmd.Process.Pid
	if err := os.WriteFile(filepath.Join(dir, "lock"), []byte(strconv.Itoa(dead)+"\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, cfg)
	defer s.Close()
	b, _ := os.ReadFile(filepath.Join(dir, "lock"))
	if strings.TrimSpace(string(b)) != strconv.Itoa(os.Getpid()) {
		t.Fatalf("stale lock not taken over: lock holds %q", b)
	}
}

func TestRocksDBLock(t *testing.T) {
	cfg := spoolCfg("meta", KindRocksDB, t.TempDir())
	s := openStore(t, cfg)
	if _, err := Open(cfg, testLog(t)); err == nil || !strings.Contains(err.Error(), "locked") {
		t.Fatalf("second Open: %v; want a lock error", err)
	}
	s.Close()
	s = openStore(t, cfg)
	s.Close()
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	for _, cfg := range []config.Spool{
		{Name: "data", Kind: "Bogus", Path: dir},
		{Name: "data", Kind: KindLocalDisk},
		{Name: "data", Kind: KindLocalDisk, Path: dir, MinFreeSpace: "lots"},
		{Name: "data", Kind: KindLocalDisk, Path: dir, MinFreeInodes: "120%"},
	} {
		if s, err := Open(cfg, testLog(t)); err == nil {
			s.Close()
			t.Errorf("Open(%+v) succeeded", cfg)
		}
	}
}

func TestParseFloor(t *testing.T) {
	for _, c := range []struct {
		in      string
		bytes   bool
		pct     float64
		abs     uint64
		isPct   bool
		wantErr bool
	}{
		{in: "", bytes: true, pct: 10, isPct: true},
		{in: "10%", bytes: true, pct: 10, isPct: true},
		{in: "99.999%", bytes: true, pct: 99.999, isPct: true},
		{in: "2GB", bytes: true, abs: 2e9},
		{in: "2 GiB", bytes: true, abs: 2 << 30},
		{in: "1.5G", bytes: true, abs: 1.5e9},
		{in: "512MB", bytes: true, abs: 512e6},
		{in: "100", bytes: true, abs: 100},
		{in: "100B", bytes: true, abs: 100},
		{in: "100000", abs: 100000},
		{in: "100k", abs: 100000},
		{in: "1M", abs: 1e6},
		{in: "many", wantErr: true},
		{in: "10 parsecs", bytes: true, wantErr: true},
		{in: "101%", wantErr: true},
		{in: "-1%", wantErr: true},
	} {
		f, err := parseFloor(c.in, c.bytes)
		if c.wantErr {
			if err == nil {
				t.Errorf("parseFloor(%q) = %+v, want error", c.in, f)
			}
			continue
		}
		if err != nil || f.isPercent != c.isPct || f.percent != c.pct || f.absolute != c.abs {
			t.Errorf("parseFloor(%q) = %+v, %v", c.in, f, err)
		}
	}
	pct := floor{isPercent: true, percent: 10}
	if !pct.below(9, 100) || pct.below(10, 100) || pct.below(0, 0) {
		t.Error("percent floor comparisons")
	}
	abs := floor{absolute: 1000}
	if !abs.below(999, 1e9) || abs.below(1000, 1e9) {
		t.Error("absolute floor comparisons")
	}
}

func TestFreeSpaceFloor(t *testing.T) {
	for _, kind := range kinds {
		for _, which := range []string{"space", "inodes"} {
			t.Run(kind+"/"+which, func(t *testing.T) {
				ctx := context.Background()
				cfg := spoolCfg("data", kind, t.TempDir())
				if which == "space" {
					cfg.MinFreeSpace = "99.999%"
				} else {
					cfg.MinFreeInodes = "99.999%"
				}
				s := openStore(t, cfg)
				defer s.Close()
				ok, reason := s.Health()
				if ok || !strings.Contains(reason, "disk is too full") || !strings.Contains(reason, "min_free_"+which) {
					t.Fatalf("Health = %v, %q; want disk is too full (min_free_%s)", ok, reason, which)
				}
				err := s.Put(ctx, newID(message.NewIDGenerator()), []byte("x"), true)
				if !errors.Is(err, ErrDiskFull) || !strings.Contains(err.Error(), "disk is too full") {
					t.Fatalf("Put = %v; want disk is too full", err)
				}
				if st := s.Stats(); st.Puts != 0 {
					t.Fatalf("a refused Put was counted: %+v", st)
				}
			})
		}
	}
	// Above the floor (absolute, tiny): healthy.
	cfg := spoolCfg("data", KindLocalDisk, t.TempDir())
	cfg.MinFreeSpace, cfg.MinFreeInodes = "1KB", "10"
	s := openStore(t, cfg)
	defer s.Close()
	if ok, reason := s.Health(); !ok {
		t.Fatalf("Health = false, %q", reason)
	}
}

func TestHealthCached(t *testing.T) {
	h := newHealth(t.TempDir(), floors{space: floor{isPercent: true, percent: 0}, inodes: floor{isPercent: true}})
	now := time.Unix(1000, 0)
	h.now = func() time.Time { return now }
	if err := h.get(); err != nil {
		t.Fatal(err)
	}
	h.floors.space = floor{spec: "100%", isPercent: true, percent: 100}
	if err := h.get(); err != nil {
		t.Fatal("result not cached for a second:", err)
	}
	now = now.Add(healthTTL)
	if err := h.get(); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("after the TTL: %v, want ErrDiskFull", err)
	}
}

func TestLocalDiskPutCancelledDuringGroupCommit(t *testing.T) {
	dir := t.TempDir()
	s, err := open(spoolCfg("data", KindLocalDisk, dir), testLog(t), true)
	if err != nil {
		t.Fatal(err)
	}
	ld := s.(*localDisk)
	if !ld.group {
		t.Skip("no group commit on this system")
	}
	entered := make(chan struct{}, 16)
	release := make(chan struct{})
	ld.syncer.fn = func(f *os.File) error {
		entered <- struct{}{}
		<-release
		return syncfs(f)
	}
	gen := message.NewIDGenerator()
	id := newID(gen)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Put(ctx, id, []byte("never acknowledged"), true) }()
	<-entered // the committer is syncing our data
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("Put = %v, want context.Canceled", err)
	}
	close(release)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, spoolCfg("data", KindLocalDisk, dir))
	defer s.Close()
	if _, err := s.Get(context.Background(), id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("cancelled Put left an entry: %v", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "new")); len(ents) != 0 {
		t.Fatalf("cancelled Put left %d temporary files", len(ents))
	}
}

func TestPutContextDone(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			cfg := spoolCfg("data", kind, t.TempDir())
			s := openStore(t, cfg)
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			id := newID(message.NewIDGenerator())
			if err := s.Put(ctx, id, []byte("x"), true); !errors.Is(err, context.Canceled) {
				t.Fatalf("Put = %v, want context.Canceled", err)
			}
			if _, err := s.Get(context.Background(), id); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Get after cancelled Put: %v", err)
			}
			// Many concurrent Puts with short deadlines: each either
			// succeeds and is stored, or fails and is not.
			gen := message.NewIDGenerator()
			var mu sync.Mutex
			stored := map[string]bool{}
			var wg sync.WaitGroup
			for i := 0; i < 32; i++ {
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					ctx, cancel := context.WithTimeout(context.Background(), time.Duration(i%4)*time.Millisecond)
					defer cancel()
					id := newID(gen)
					err := s.Put(ctx, id, bytes.Repeat([]byte("y"), 10000), true)
					mu.Lock()
					stored[id] = err == nil
					mu.Unlock()
				}(i)
			}
			wg.Wait()
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = openStore(t, cfg)
			defer s.Close()
			for id, ok := range stored {
				_, err := s.Get(context.Background(), id)
				if ok && err != nil {
					t.Errorf("acknowledged %s lost: %v", id, err)
				}
				if !ok && !errors.Is(err, ErrNotFound) {
					t.Errorf("refused %s is stored (%v)", id, err)
				}
			}
		})
	}
}

func TestLocalDiskGroupCommitSharesSyncs(t *testing.T) {
	s, err := open(spoolCfg("data", KindLocalDisk, t.TempDir()), testLog(t), true)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ld := s.(*localDisk)
	if !ld.group {
		t.Skip("no group commit on this system")
	}
	ld.syncer.fn = func(f *os.File) error {
		time.Sleep(5 * time.Millisecond) // a slow disk: writers pile up
		return syncfs(f)
	}
	gen := message.NewIDGenerator()
	const writers = 64
	var wg sync.WaitGroup
	for i := 0; i < writers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Put(context.Background(), newID(gen), []byte("shared"), true); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	st := s.Stats()
	if st.SyncedPuts != writers || st.Syncs >= writers {
		t.Fatalf("stats %+v: %d synchronous puts should share far fewer than %d syncs", st, writers, writers)
	}
	t.Logf("%d synchronous puts, %d syncfs", st.SyncedPuts, st.Syncs)
}
