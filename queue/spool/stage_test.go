package spool

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/kumogo/kumogo/internal/message"
)

func stageMsg(gen *message.IDGenerator, i int) *message.Message {
	body := fmt.Sprintf("Subject: %d\r\n\r\n%0100000d\r\n", i, i)
	return message.New(gen, message.Address{User: "s", Domain: "x.example"}, []message.Address{{User: fmt.Sprintf("r%d", i), Domain: "y.example"}}, []byte(body))
}

// TestPebbleStageCommitSurvivesPowerLoss: on a file system that keeps only
// what was synced when the power goes (pebble's crashable MemFS), every
// message staged before a Commit is there after the crash, data and meta;
// messages staged after it need a Commit of their own (the control: the
// crash really drops unsynced writes).
func TestPebbleStageCommitSurvivesPowerLoss(t *testing.T) {
	dir := t.TempDir()
	mem := vfs.NewCrashableMem()
	open := func(fs vfs.FS) *Spools {
		t.Helper()
		var st [2]Store
		for i, name := range []string{"data", "meta"} {
			// the real directory is for the free-space check only
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
	sp := open(mem)
	ctx := context.Background()
	gen := message.NewIDGenerator()
	var committed, pending []string
	for i := 0; i < 20; i++ {
		m := stageMsg(gen, i)
		if err := sp.Stage(ctx, m); err != nil {
			t.Fatal(err)
		}
		committed = append(committed, m.ID())
	}
	if err := sp.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	for i := 20; i < 25; i++ {
		m := stageMsg(gen, i)
		if err := sp.Stage(ctx, m); err != nil {
			t.Fatal(err)
		}
		pending = append(pending, m.ID())
	}
	crashed := mem.CrashClone(vfs.CrashCloneCfg{}) // only what was synced
	if err := sp.Close(); err != nil {
		t.Fatal(err)
	}

	after := open(crashed)
	defer after.Close()
	for i, id := range committed {
		m, err := after.Load(ctx, id)
		if err != nil {
			t.Fatalf("committed message %d lost to the power cut: %v", i, err)
		}
		if want := stageMsg(gen, i); string(m.Data()) != string(want.Data()) {
			t.Fatalf("committed message %d came back different", i)
		}
	}
	lost := 0
	for _, id := range pending {
		if _, err := after.Load(ctx, id); err != nil {
			lost++
		}
	}
	if lost == 0 {
		t.Fatal("every message staged after the last Commit survived the crash too: the crash does not drop unsynced writes, so this test proves nothing")
	}
}

// TestLocalDiskStageCommit: two LocalDisk spools on one file system stage a
// message with one shared syncfs round (its data) and leave the second
// (its name) to Commit, which one round serves for every staged message;
// a closed spool refuses to commit.
func TestLocalDiskStageCommit(t *testing.T) {
	dir := t.TempDir()
	sp, err := OpenSpools(spoolCfg("data", KindLocalDisk, filepath.Join(dir, "data")), spoolCfg("meta", KindLocalDisk, filepath.Join(dir, "meta")), testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, ok := sharedPair(sp.Data(), sp.Meta()); !ok || !haveSyncfs {
		t.Skip("no shared syncfs group commit here")
	}
	ctx := context.Background()
	gen := message.NewIDGenerator()
	syncs := func() uint64 { return sp.Data().Stats().Syncs }
	before := syncs()
	var ids []string
	for i := 0; i < 5; i++ {
		m := stageMsg(gen, i)
		if err := sp.Stage(ctx, m); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, m.ID())
	}
	staged := syncs()
	if staged-before != 5 {
		t.Fatalf("staging 5 messages one after the other took %d syncfs rounds, want 5 (their data)", staged-before)
	}
	if err := sp.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if n := syncs() - staged; n != 1 {
		t.Fatalf("Commit took %d syncfs rounds, want 1 for all 5 names", n)
	}
	for _, id := range ids {
		if _, err := sp.Load(ctx, id); err != nil {
			t.Fatalf("staged and committed %s: %v", id, err)
		}
	}
	if err := sp.Close(); err != nil {
		t.Fatal(err)
	}
	if err := sp.Commit(ctx); err == nil || !errors.Is(err, ErrClosed) {
		t.Fatalf("Commit on a closed spool: %v, want ErrClosed", err)
	}
}
