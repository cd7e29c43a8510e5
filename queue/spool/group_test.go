package spool

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/kumogo/kumogo/internal/message"
)

// openCrashablePebble opens two RocksDB stores on fs (pebble's crashable
// MemFS in the tests), as the power-loss test of stage_test.go does.
func openCrashablePebble(t *testing.T, dir string, fs vfs.FS) *Spools {
	t.Helper()
	var st [2]Store
	for i, name := range []string{"data", "meta"} {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(path, 0o750); err != nil {
			t.Fatal(err)
		}
		cfg := spoolCfg(name, KindRocksDB, path)
		fl, err := parseFloors(cfg)
		if err != nil {
			t.Fatal(err)
		}
		s, err := openPebbleFS(cfg, fl, testLog(t), true, fs, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		st[i] = s
	}
	return NewSpools(st[0], st[1], testLog(t))
}

// TestPebbleStageGroupSurvivesPowerLoss: a group staged with StageGroup
// (one pebble batch per store) is durable, data and meta, once a Commit
// has run after it, through a power cut that keeps only what was synced; a
// group staged after the last Commit is lost whole (the control), and a
// group removed with RemoveGroup stays removed after a restart.
func TestPebbleStageGroupSurvivesPowerLoss(t *testing.T) {
	dir := t.TempDir()
	mem := vfs.NewCrashableMem()
	sp := openCrashablePebble(t, dir, mem)
	ctx := context.Background()
	gen := message.NewIDGenerator()
	group := func(from, n int) ([]*message.Message, []string) {
		var msgs []*message.Message
		var ids []string
		for i := from; i < from+n; i++ {
			m := testMessage(gen, 1+i%3, 2000+i)
			msgs = append(msgs, m)
			ids = append(ids, m.ID())
		}
		return msgs, ids
	}
	kept, keptIDs := group(0, 40)
	removed, removedIDs := group(40, 10)
	for _, g := range [][]*message.Message{kept, removed} {
		if err := sp.StageGroup(ctx, g); err != nil {
			t.Fatal(err)
		}
	}
	if err := sp.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if got := sp.Data().Stats().Puts; got != 50 {
		t.Fatalf("data puts %d, want 50", got)
	}
	if err := sp.RemoveGroup(ctx, removedIDs); err != nil {
		t.Fatal(err)
	}
	// the removals are not synced by themselves: the next commit covers
	// them, as the remover's Sync round does
	if err := sp.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	pending, pendingIDs := group(50, 20)
	if err := sp.StageGroup(ctx, pending); err != nil {
		t.Fatal(err)
	}
	crashed := mem.CrashClone(vfs.CrashCloneCfg{})
	if err := sp.Close(); err != nil {
		t.Fatal(err)
	}

	after := openCrashablePebble(t, dir, crashed)
	defer after.Close()
	for i, id := range keptIDs {
		m, err := after.Load(ctx, id)
		if err != nil {
			t.Fatalf("message %d of a committed group lost to the power cut: %v", i, err)
		}
		sameMessage(t, m, kept[i])
	}
	for _, id := range removedIDs {
		if _, err := after.Load(ctx, id); !errors.Is(err, ErrNotFound) {
			t.Fatalf("a message removed with its group came back after the restart: %v", err)
		}
	}
	lost := 0
	for _, id := range pendingIDs {
		if _, err := after.Load(ctx, id); err != nil {
			lost++
		}
	}
	if lost != len(pendingIDs) {
		t.Fatalf("%d of the %d messages of an uncommitted group lost: a group is one write, all or none", lost, len(pendingIDs))
	}
	n := 0
	if _, err := after.Enumerate(ctx, func(*message.Message) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n != len(keptIDs) {
		t.Fatalf("enumerated %d messages after the restart, want the %d of the committed group", n, len(keptIDs))
	}
}

// TestStageGroupAllOrNothing: a group with a message that cannot be
// stored (no data) stores none of the others; LocalDisk stores, which
// take no group writes, stage the messages one by one and the group is
// still durable after Commit and removable in one call.
func TestStageGroupAllOrNothing(t *testing.T) {
	ctx := context.Background()
	gen := message.NewIDGenerator()
	for _, kind := range []string{KindRocksDB, KindLocalDisk} {
		t.Run(kind, func(t *testing.T) {
			sp := openSpools(t, kind, t.TempDir())
			defer sp.Close()
			good := []*message.Message{testMessage(gen, 1, 3000), testMessage(gen, 2, 100)}
			bad := message.New(gen, message.Address{User: "s", Domain: "x.example"}, []message.Address{{User: "r", Domain: "y.example"}}, nil)
			if err := sp.StageGroup(ctx, append(good[:2:2], bad)); err == nil {
				t.Fatal("a group with an empty message was stored")
			}
			for _, m := range good {
				if _, err := sp.Load(ctx, m.ID()); !errors.Is(err, ErrNotFound) {
					t.Fatalf("a message of a failed group was stored: %v", err)
				}
			}
			if err := sp.StageGroup(ctx, good); err != nil {
				t.Fatal(err)
			}
			if err := sp.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			for _, m := range good {
				got, err := sp.Load(ctx, m.ID())
				if err != nil {
					t.Fatal(err)
				}
				sameMessage(t, got, m)
			}
			if err := sp.RemoveGroup(ctx, []string{good[0].ID(), good[1].ID()}); err != nil {
				t.Fatal(err)
			}
			for _, m := range good {
				if _, err := sp.Load(ctx, m.ID()); !errors.Is(err, ErrNotFound) {
					t.Fatalf("removed with its group but still stored: %v", err)
				}
			}
		})
	}
}
