package logrecord

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/kumogo/kumogo/internal/smtpreply"
	"github.com/rs/zerolog"
)

// readAll takes every record Next has now.
func readAll(t *testing.T, r *SegmentReader) []string {
	t.Helper()
	var ids []string
	for {
		line, err := r.Next()
		if errors.Is(err, io.EOF) {
			return ids
		}
		if err != nil {
			t.Fatal(err)
		}
		var rec Record
		if err := json.Unmarshal(line, &rec); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		ids = append(ids, rec.ID)
	}
}

// TestSyncAndTail: records are readable in the segment file as soon as
// Sync returns (without waiting for the flush interval), and a
// SegmentReader follows the live segment as a tailer would: it stops at
// the last whole record and picks up what later Syncs added, then the
// rest once the segment is sealed.
func TestSyncAndTail(t *testing.T) {
	dir := t.TempDir()
	l := newTestLogger(t, testConfig(dir))
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		l.Log(rec(i), nil)
	}
	if err := l.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	names, _ := filepath.Glob(filepath.Join(dir, "*"))
	if len(names) != 1 {
		t.Fatalf("segments %v", names)
	}
	r, err := OpenSegment(names[0])
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if ids := readAll(t, r); len(ids) != 3 || ids[2] != "id-000002" {
		t.Fatalf("after the first Sync: %v", ids)
	}
	// concurrent callers share rounds and all see their records durable
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				l.Log(rec(3+g*25+i), nil)
				if err := l.Sync(ctx); err != nil {
					t.Error(err)
				}
			}
		}(g)
	}
	wg.Wait()
	if ids := readAll(t, r); len(ids) != 200 {
		t.Fatalf("after concurrent Syncs the tailer read %d more records, want 200", len(ids))
	}
	l.Log(rec(203), nil) // not synced: not readable yet (until the flush tick)
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if ids := readAll(t, r); len(ids) != 1 || ids[0] != "id-000203" {
		t.Fatalf("after sealing: %v", ids)
	}
	if info, _ := os.Stat(names[0]); info.Mode().Perm()&0o222 != 0 {
		t.Fatal("segment not sealed")
	}
	if err := l.Sync(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("Sync after Close: %v", err)
	}
}

// BenchmarkLogSync: 50 writers, each logging a Reception record and
// waiting for its Sync, as 50 relay sessions do.
func BenchmarkLogSync(b *testing.B) {
	for _, sync := range []bool{false, true} {
		name := "nosync"
		if sync {
			name = "sync"
		}
		b.Run(name, func(b *testing.B) {
			l, err := New(testConfig(b.TempDir()), "node-1", zerolog.Nop())
			if err != nil {
				b.Fatal(err)
			}
			m := testMessage(b)
			b.SetParallelism(25) // 2 cores × 25 = 50 writers
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					r := Record{Type: Reception, Response: smtpreply.Response{Code: 250}, SessionID: "sess"}
					l.Log(&r, m)
					if sync {
						if err := l.Sync(context.Background()); err != nil {
							b.Error(err)
							return
						}
					}
				}
			})
			if err := l.Close(context.Background()); err != nil {
				b.Fatal(err)
			}
		})
	}
}
