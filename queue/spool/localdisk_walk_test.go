package spool

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"testing"
)

// The parallel walk of a LocalDisk spool yields every entry once with its
// content, on one goroutine; moves what does not fit the layout to
// corrupt/ at every depth; removes the directories it finds empty; and
// stops on the callback's error or a cancelled context.
func TestLocalDiskWalk(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openStore(t, spoolCfg("meta", KindLocalDisk, dir))
	defer s.Close()
	rnd := rand.New(rand.NewPCG(1, 2))
	want := map[string]string{}
	for len(want) < 1500 {
		// ids spread over many data/aa/bb subtrees, and some sharing a
		// leaf directory
		id := fmt.Sprintf("%016x%016x", rnd.Uint64(), rnd.Uint64())
		if len(want)%10 == 1 {
			for prev := range want {
				id = prev[:8] + id[8:]
				break
			}
		}
		want[id] = "content of " + id
		if err := s.Put(ctx, id, []byte(want[id]), false); err != nil {
			t.Fatal(err)
		}
	}
	// one entry larger than the walker's first read buffer
	big := make([]byte, 100<<10)
	for i := range big {
		big[i] = byte(i)
	}
	bigID := "0123456789abcdef0123456789abcdef"
	want[bigID] = string(big)
	if err := s.Put(ctx, bigID, big, false); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	mk := func(p string, file bool) {
		t.Helper()
		p = filepath.Join(data, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
			t.Fatal(err)
		}
		if file {
			if err := os.WriteFile(p, []byte("x"), 0o640); err != nil {
				t.Fatal(err)
			}
		} else if err := os.MkdirAll(p, 0o750); err != nil {
			t.Fatal(err)
		}
	}
	mk("junk", true)              // a file in data/
	mk("zz", false)               // a directory that is not hex
	mk("ab/README", true)         // a file at depth 2
	mk("ab/cd/ef/gh", false)      // not hex at depth 4
	mk("ab/cd/ef/01/sub", false)  // a directory where files belong
	mk("e0", false)               // empty directories at each depth
	mk("e1/e2", false)            //
	mk("e1/e3/e4", false)         //
	mk("e1/e3/e5/e6", false)      //
	mk("ab/cd/ef/02/file", false) // would be an id with a directory
	strays := 6

	got := map[string]string{}
	if err := s.Enumerate(ctx, func(id string, b []byte) error {
		if _, dup := got[id]; dup {
			t.Errorf("%s enumerated twice", id)
		}
		got[id] = string(b) // unguarded: fn runs on one goroutine (-race)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("enumerated %d entries, want %d", len(got), len(want))
	}
	for id, c := range want {
		if got[id] != c {
			t.Fatalf("%s: content %d bytes, want %d", id, len(got[id]), len(c))
		}
	}
	corrupt, err := os.ReadDir(filepath.Join(dir, "corrupt"))
	if err != nil || len(corrupt) != strays {
		var names []string
		for _, e := range corrupt {
			names = append(names, e.Name())
		}
		t.Fatalf("corrupt/ holds %v (%v), want %d strays", names, err, strays)
	}
	// no empty directory is left, and nothing but the entries
	var files []string
	err = filepath.WalkDir(data, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if ents, _ := os.ReadDir(p); len(ents) == 0 && p != data {
				t.Errorf("empty directory %s left", p)
			}
			return nil
		}
		rel, _ := filepath.Rel(data, p)
		files = append(files, rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(want) {
		t.Errorf("%d files under data/, want %d", len(files), len(want))
	}

	var ids []string
	if err := s.EnumerateIDs(ctx, func(id string) error { ids = append(ids, id); return nil }); err != nil {
		t.Fatal(err)
	}
	sort.Strings(ids)
	if len(ids) != len(want) {
		t.Fatalf("EnumerateIDs gave %d ids, want %d", len(ids), len(want))
	}
	for _, id := range ids {
		if _, ok := want[id]; !ok {
			t.Fatalf("EnumerateIDs gave unknown id %s", id)
		}
	}

	stop := errors.New("stop")
	n := 0
	if err := s.Enumerate(ctx, func(string, []byte) error {
		if n++; n == 100 {
			return stop
		}
		return nil
	}); !errors.Is(err, stop) || n != 100 {
		t.Fatalf("Enumerate after the callback's error: %v after %d calls", err, n)
	}
	cctx, cancel := context.WithCancel(ctx)
	n = 0
	if err := s.EnumerateIDs(cctx, func(string) error {
		if n++; n == 10 {
			cancel()
		}
		return nil
	}); !errors.Is(err, context.Canceled) {
		t.Fatalf("EnumerateIDs with a cancelled context: %v", err)
	}
	// a walk that stopped early removed nothing it had not finished
	left := 0
	if err := s.EnumerateIDs(ctx, func(string) error { left++; return nil }); err != nil || left != len(want) {
		t.Fatalf("after stopped walks: %d entries, %v", left, err)
	}
}
