package logrecord

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/rs/zerolog"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/smtpreply"
)

var segmentNameRE = regexp.MustCompile(`^\d{8}-\d{6}\.\d{8}$`)

func TestSegmentName(t *testing.T) {
	tests := []struct {
		t    time.Time
		want string
	}{
		{time.Date(2024, 3, 5, 7, 8, 9, 0, time.UTC), "20240305-070809.00000000"},
		{time.Date(2024, 3, 5, 7, 8, 9, 123456789, time.UTC), "20240305-070809.12345678"},
		{time.Date(2024, 12, 31, 23, 59, 59, 10, time.UTC), "20241231-235959.00000001"},
		{time.Date(2024, 3, 5, 8, 8, 9, 500000000, time.FixedZone("x", 3600)), "20240305-070809.50000000"},
	}
	for _, tt := range tests {
		if got := SegmentName(tt.t); got != tt.want {
			t.Errorf("SegmentName(%v) = %s, want %s", tt.t, got, tt.want)
		}
	}
}

func testConfig(dir string) config.LocalLogs {
	cfg := config.DefaultLocalLogs()
	cfg.LogDir = dir
	return cfg
}

func newTestLogger(t *testing.T, cfg config.LocalLogs) *Logger {
	t.Helper()
	l, err := New(cfg, "node-1", zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close(context.Background()) })
	return l
}

// segments lists the files in dir with their write permission.
func segments(t *testing.T, dir string) (names []string, writable []bool) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, e.Name())
		writable = append(writable, info.Mode().Perm()&0o222 != 0)
	}
	return names, writable
}

func rec(i int) *Record {
	return &Record{Type: Delivery, ID: fmt.Sprintf("id-%06d", i), Sender: "s@example.com",
		Recipient: []string{"r@example.org"}, Response: smtpreply.Response{Code: 250, Content: "OK"}, Timestamp: testTS}
}

func checkIDs(t *testing.T, recs []Record, n int) {
	t.Helper()
	if len(recs) != n {
		t.Fatalf("read %d records, want %d", len(recs), n)
	}
	for i, r := range recs {
		if want := fmt.Sprintf("id-%06d", i); r.ID != want {
			t.Fatalf("record %d has id %s, want %s", i, r.ID, want)
		}
	}
}

func TestRoundTripAndSealOnClose(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "logs", "nested")
	l := newTestLogger(t, testConfig(dir))
	m := testMessage(t)
	for i := range 10 {
		l.Log(rec(i), m)
	}
	ctx := context.Background()
	if err := l.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// readable while the segment is still open
	recs, err := ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	checkIDs(t, recs, 10)
	names, writable := segments(t, dir)
	if len(names) != 1 || !writable[0] || !segmentNameRE.MatchString(names[0]) {
		t.Fatalf("segments %v writable %v", names, writable)
	}
	info, _ := os.Stat(dir)
	if info.Mode().Perm() != 0o755 {
		t.Errorf("dir mode %v", info.Mode().Perm())
	}
	for i := 10; i < 20; i++ {
		l.Log(rec(i), nil)
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(ctx); err != nil {
		t.Fatalf("second close: %v", err)
	}
	names, writable = segments(t, dir)
	if len(names) != 1 || writable[0] {
		t.Fatalf("after close: %v writable %v", names, writable)
	}
	if fi, _ := os.Stat(filepath.Join(dir, names[0])); fi.Mode().Perm() != 0o444 {
		t.Errorf("sealed mode %v", fi.Mode().Perm())
	}
	recs, err = ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	checkIDs(t, recs, 20)
	if recs[0].NodeID != "node-1" || recs[0].Recipient[0] != "r@example.org" || recs[0].Timestamp != testTS {
		t.Errorf("record 0: %+v", recs[0])
	}
	raw, err := ReadDirRaw(dir)
	if err != nil {
		t.Fatal(err)
	}
	if raw[0]["recipient"] != "r@example.org" || raw[0]["type"] != "Delivery" {
		t.Errorf("raw record 0: %v", raw[0])
	}
	// logging after close drops the record
	if err := l.LogContext(ctx, rec(99), nil); err != ErrClosed {
		t.Errorf("LogContext after close = %v", err)
	}
	l.Log(rec(99), nil)
}

func TestRotationBySize(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(dir)
	cfg.MaxFileSize = 2000
	l := newTestLogger(t, cfg)
	line := len(rec(0).AppendJSON(nil)) + 1
	const n = 100
	for i := range n {
		l.Log(rec(i), nil)
	}
	if err := l.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	names, writable := segments(t, dir)
	perFile := (2000 + line - 1) / line
	if want := (n + perFile - 1) / perFile; len(names) != want {
		t.Fatalf("%d segments, want %d (line %d bytes)", len(names), want, line)
	}
	for i, w := range writable {
		last := i == len(writable)-1
		if w != (last && n%perFile != 0) {
			t.Errorf("segment %d (%s) writable=%v", i, names[i], w)
		}
	}
	recs, err := ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	checkIDs(t, recs, n)
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, w := range func() []bool { _, w := segments(t, dir); return w }() {
		if w {
			t.Error("writable segment after close")
		}
	}
}

func TestRotationByDuration(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(dir)
	cfg.MaxSegmentDuration = 100 * time.Millisecond
	l := newTestLogger(t, cfg)
	l.Log(rec(0), nil)
	// the idle segment is sealed by the timer
	deadline := time.Now().Add(5 * time.Second)
	for {
		names, writable := segments(t, dir)
		if len(names) == 1 && !writable[0] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("segment not sealed: %v %v", names, writable)
		}
		time.Sleep(10 * time.Millisecond)
	}
	l.Log(rec(1), nil)
	if err := l.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	names, writable := segments(t, dir)
	if len(names) != 2 || writable[0] || !writable[1] || names[0] >= names[1] {
		t.Fatalf("segments %v writable %v", names, writable)
	}
	recs, err := ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	checkIDs(t, recs, 2)
}

func TestStartupSealsLeftovers(t *testing.T) {
	dir := t.TempDir()
	other := t.TempDir()
	left := filepath.Join(dir, "20240101-000000.00000000")
	left2 := filepath.Join(other, "20240101-000000.00000000_bounce")
	for _, p := range []string{left, left2} {
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg := testConfig(dir)
	cfg.PerRecord = map[string]config.PerRecord{"Bounce": {Enable: true, LogDir: other, Suffix: "_bounce"}}
	newTestLogger(t, cfg)
	for _, p := range []string{left, left2} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o444 {
			t.Errorf("%s mode %v", p, fi.Mode().Perm())
		}
	}
}

func TestPerRecord(t *testing.T) {
	dir := t.TempDir()
	bounceDir := filepath.Join(t.TempDir(), "bounces")
	cfg := testConfig(dir)
	cfg.PerRecord = map[string]config.PerRecord{
		"Delivery":  {Enable: false},
		"Bounce":    {Enable: true, LogDir: bounceDir, Suffix: "_bounce", SegmentHeader: "# bounces\n"},
		"Reception": {Enable: true, Suffix: ".rx", Template: "{{ id }}"},
		"Any":       {Enable: true},
	}
	l := newTestLogger(t, cfg)
	for i, ty := range []Type{Delivery, Bounce, Reception, TransientFailure, Bounce} {
		r := rec(i)
		r.Type = ty
		l.Log(r, nil)
	}
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	names, _ := segments(t, dir)
	if len(names) != 2 {
		t.Fatalf("main dir: %v", names)
	}
	var rx, plain int
	for _, n := range names {
		if strings.HasSuffix(n, ".rx") && segmentNameRE.MatchString(strings.TrimSuffix(n, ".rx")) {
			rx++
		} else if segmentNameRE.MatchString(n) {
			plain++
		}
	}
	if rx != 1 || plain != 1 {
		t.Errorf("main dir names %v", names)
	}
	recs, err := ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Type{}
	for _, r := range recs {
		got[r.ID] = r.Type
	}
	if len(got) != 2 || got["id-000002"] != Reception || got["id-000003"] != TransientFailure {
		t.Errorf("main dir records %v", got)
	}
	bnames, _ := segments(t, bounceDir)
	if len(bnames) != 1 || !strings.HasSuffix(bnames[0], "_bounce") {
		t.Fatalf("bounce dir %v", bnames)
	}
	brecs, err := ReadDir(bounceDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(brecs) != 2 || brecs[0].ID != "id-000001" || brecs[1].ID != "id-000004" {
		t.Errorf("bounce records %+v", brecs)
	}
}

func TestNewErrors(t *testing.T) {
	if _, err := New(config.DefaultLocalLogs(), "", zerolog.Nop()); err == nil {
		t.Error("missing log_dir accepted")
	}
	cfg := testConfig(t.TempDir())
	cfg.PerRecord = map[string]config.PerRecord{"Nope": {Enable: true}}
	if _, err := New(cfg, "", zerolog.Nop()); err == nil || !strings.Contains(err.Error(), "Nope") {
		t.Errorf("unknown per_record type: %v", err)
	}
}

func TestCompressionLevels(t *testing.T) {
	for _, level := range []int{0, 1, 3, 9, 19, 22, -5} {
		dir := t.TempDir()
		cfg := testConfig(dir)
		cfg.CompressionLevel = level
		l := newTestLogger(t, cfg)
		for i := range 50 {
			l.Log(rec(i), nil)
		}
		if err := l.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		recs, err := ReadDir(dir)
		if err != nil {
			t.Fatalf("level %d: %v", level, err)
		}
		checkIDs(t, recs, 50)
	}
}

func TestBackPressureLosesNothing(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(dir)
	cfg.BackPressure = 1
	cfg.MaxFileSize = 50_000
	l := newTestLogger(t, cfg)
	const n = 5000
	for i := range n {
		l.Log(rec(i), nil)
	}
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	recs, err := ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	checkIDs(t, recs, n)
}

func TestLogContextCancelled(t *testing.T) {
	cfg := testConfig(t.TempDir())
	cfg.BackPressure = 1
	l := newTestLogger(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// the queue may accept one or two records; eventually the cancelled
	// context must win instead of blocking forever
	var err error
	for i := 0; i < 100000 && err == nil; i++ {
		err = l.LogContext(ctx, rec(i), nil)
	}
	if err != nil && err != context.Canceled {
		t.Fatalf("err = %v", err)
	}
}

func TestConcurrentLog(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(dir)
	cfg.BackPressure = 64
	cfg.MaxFileSize = 100_000
	cfg.Meta = []string{"x_*"}
	cfg.Headers = []string{"X-*"}
	l := newTestLogger(t, cfg)
	const workers, per = 8, 500
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := testMessage(t)
			for i := range per {
				r := rec(w*per + i)
				l.Log(r, m)
				if i%100 == 0 {
					if err := l.Flush(context.Background()); err != nil {
						t.Error(err)
					}
				}
			}
		}()
	}
	wg.Wait()
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	recs, err := ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != workers*per {
		t.Fatalf("%d records", len(recs))
	}
	seen := map[string]bool{}
	for _, r := range recs {
		if seen[r.ID] {
			t.Fatalf("duplicate %s", r.ID)
		}
		seen[r.ID] = true
		if r.Meta["x_two"] != "2" || r.Headers["x-tag"] != "two" {
			t.Fatalf("selection missing: %+v", r)
		}
	}
	_, writable := segments(t, dir)
	for _, w := range writable {
		if w {
			t.Fatal("writable segment after close")
		}
	}
}

func TestPeriodicFlush(t *testing.T) {
	dir := t.TempDir()
	l := newTestLogger(t, testConfig(dir))
	l.Log(rec(0), nil)
	// without an explicit Flush the record becomes readable within ~1s
	deadline := time.Now().Add(3 * time.Second)
	for {
		recs, err := ReadDir(dir)
		if err == nil && len(recs) == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("record not readable: %v %v", recs, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestReadDirSealedCorrupt(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "20240101-000000.00000000")
	if err := os.WriteFile(p, []byte("not zstd"), 0o444); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadDir(dir); err == nil {
		t.Error("corrupt sealed segment accepted")
	}
	if err := os.Chmod(p, fs.FileMode(0o644)); err != nil {
		t.Fatal(err)
	}
	if recs, err := ReadDir(dir); err != nil || len(recs) != 0 {
		t.Errorf("writable garbage: %v %v", recs, err)
	}
}

func BenchmarkLogReception(b *testing.B) {
	bench := func(b *testing.B, meta, headers []string) {
		cfg := testConfig(b.TempDir())
		cfg.Meta, cfg.Headers = meta, headers
		l, err := New(cfg, "node-1", zerolog.Nop())
		if err != nil {
			b.Fatal(err)
		}
		m := testMessage(b)
		m.SetMeta("queue", "c1:t1@example.org")
		peer := &PeerAddress{Name: "client.example.com", Addr: "10.0.0.1"}
		b.ReportAllocs()
		for b.Loop() {
			r := Record{Type: Reception, Response: smtpreply.Response{Code: 250}, PeerAddress: peer, SessionID: "sess"}
			l.Log(&r, m)
		}
		if err := l.Close(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	// KumoMTA's default: no meta, no headers
	b.Run("default", func(b *testing.B) { bench(b, nil, nil) })
	// meta names and X-* headers, including an RFC 2047 Subject and a
	// folded header (each of those costs allocations to decode)
	b.Run("selection", func(b *testing.B) {
		bench(b, []string{"tenant", "campaign", "x_*"}, []string{"Subject", "X-*"})
	})
}

func BenchmarkAppendJSON(b *testing.B) {
	m := testMessage(b)
	e := recordEncoder{msg: m, metaSel: newSelector([]string{"tenant", "campaign", "x_*"}, false),
		hdrSel: newSelector([]string{"Subject", "X-*"}, true), nodeID: "node-1"}
	r := Record{Type: Reception, Response: smtpreply.Response{Code: 250}, PeerAddress: &PeerAddress{Name: "c", Addr: "10.0.0.1"}}
	buf := make([]byte, 0, 2048)
	b.ReportAllocs()
	for b.Loop() {
		buf = e.append(buf[:0], &r)
	}
	b.SetBytes(int64(len(buf)))
}

func TestReadDirPartialFrame(t *testing.T) {
	dir := t.TempDir()
	var buf bytes.Buffer
	enc, err := zstd.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		enc.Write(append(rec(i).AppendJSON(nil), '\n'))
	}
	enc.Close()
	complete := buf.Len()
	enc.Reset(&buf)
	// enough records for several zstd blocks in the second frame
	const total = 3000
	for i := 3; i < total; i++ {
		enc.Write(append(rec(i).AppendJSON(nil), '\n'))
	}
	enc.Close()
	// a writer that has written the first frame and part of the second
	cut := buf.Bytes()[:complete+(buf.Len()-complete)/2]
	p := filepath.Join(dir, "20240101-000000.00000000")
	if err := os.WriteFile(p, cut, 0o644); err != nil {
		t.Fatal(err)
	}
	recs, err := ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) < 3 {
		t.Fatalf("got %d records, want at least the 3 of the complete frame", len(recs))
	}
	checkIDs(t, recs, len(recs))
	if err := os.Chmod(p, 0o444); err != nil {
		t.Fatal(err)
	}
	// sealed (as the next start seals a crashed run's segment), the cut
	// frame is read up to its last whole record too
	sealed, err := ReadDir(dir)
	if err != nil {
		t.Fatalf("truncated sealed segment: %v", err)
	}
	if len(sealed) <= len(recs) || len(sealed) >= total {
		t.Fatalf("sealed truncated segment gave %d records; the writable one %d, %d were written", len(sealed), len(recs), total)
	}
	checkIDs(t, sealed, len(sealed))
}

// TestFullDiskBacksOff drives a segment writer whose files fail every
// write with ENOSPC (they are /dev/full) for ten simulated seconds: it
// must try a new segment once per backoff period, not once per record,
// leave no empty files behind, and once writes work again resume on its
// own and say how many records it dropped.
func TestFullDiskBacksOff(t *testing.T) {
	dir := t.TempDir()
	full := true
	creates := 0
	w := &segmentWriter{dir: dir, level: encoderLevel(0)}
	w.create = func(path string) (*os.File, error) {
		creates++
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, openMode)
		if err != nil || !full {
			return f, err
		}
		f.Close()
		return os.OpenFile("/dev/full", os.O_WRONLY, 0)
	}
	line := append(rec(1).AppendJSON(nil), '\n')
	t0 := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	failures := 0
	for ms := 0; ms < 10_000; ms += 5 {
		now := t0.Add(time.Duration(ms) * time.Millisecond)
		if err := w.write(line, now); err != nil {
			failures++
		}
		if ms%1000 == 0 {
			if err := w.tick(now); err != nil {
				failures++
			}
		}
	}
	// backoff 1, 2, 4, 8 s: attempts at about 0, 1, 3, 7 s
	if creates < 2 || creates > 5 {
		t.Fatalf("%d segments tried in 10 s of a full disk (2,000 records), want one per backoff period", creates)
	}
	if failures != creates {
		t.Fatalf("%d errors reported for %d attempts", failures, creates)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("%d files left in the log dir by failed attempts, want none", len(ents))
	}

	full = false
	now := t0.Add(60 * time.Second)
	if err := w.write(line, now); err != nil {
		t.Fatalf("write after the disk has room: %v", err)
	}
	err := w.tick(now.Add(time.Second))
	if err == nil || !strings.Contains(err.Error(), "records were dropped") {
		t.Fatalf("recovery notice: %v", err)
	}
	if err := w.write(line, now.Add(2*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := w.seal(); err != nil {
		t.Fatalf("seal after recovery: %v", err)
	}
	recs, err := ReadDir(dir)
	if err != nil || len(recs) != 2 {
		t.Fatalf("records after recovery: %d, %v", len(recs), err)
	}
}
