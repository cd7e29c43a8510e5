package spool

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kumogo/kumogo/internal/message"
)

func openSpools(t testing.TB, kind, dir string) *Spools {
	t.Helper()
	s, err := OpenSpools(spoolCfg("data", kind, filepath.Join(dir, "data")), spoolCfg("meta", kind, filepath.Join(dir, "meta")), testLog(t))
	if err != nil {
		t.Fatalf("OpenSpools: %v", err)
	}
	return s
}

// testMessage builds a message whose data can be checked from its id alone.
func testMessage(gen *message.IDGenerator, nrcpt, size int) *message.Message {
	rcpts := make([]message.Address, nrcpt)
	for i := range rcpts {
		rcpts[i] = message.Address{User: fmt.Sprintf("rcpt%d", i), Domain: "example.com"}
	}
	m := message.New(gen, message.Address{User: "sender", Domain: "example.org"}, rcpts, nil)
	m.SetData(bodyFor(m.ID(), size))
	m.SetMeta("tenant", "acme")
	m.SetMeta("n", float64(nrcpt))
	return m
}

func bodyFor(id string, size int) []byte {
	head := "Subject: " + id + "\r\n\r\n"
	b := make([]byte, 0, len(head)+size)
	b = append(b, head...)
	for len(b) < len(head)+size {
		b = append(b, id...)
		b = append(b, "\r\n"...)
	}
	return b
}

func sameMessage(t testing.TB, got, want *message.Message) {
	t.Helper()
	if got.ID() != want.ID() || !got.Created().Equal(want.Created()) || got.Sender() != want.Sender() ||
		!reflect.DeepEqual(got.Recipients(), want.Recipients()) || !bytes.Equal(got.Data(), want.Data()) ||
		!reflect.DeepEqual(got.MetaMap(), want.MetaMap()) {
		t.Fatalf("message %s does not round-trip:\n got %v %v %v %v\nwant %v %v %v %v", want.ID(),
			got.Sender(), got.Recipients(), got.MetaMap(), len(got.Data()),
			want.Sender(), want.Recipients(), want.MetaMap(), len(want.Data()))
	}
}

func TestMetaRecordFormat(t *testing.T) {
	gen := message.NewIDGenerator()
	one := testMessage(gen, 1, 10)
	b, err := EncodeMeta(one)
	if err != nil {
		t.Fatal(err)
	}
	var rec map[string]any
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatal(err)
	}
	if rec["sender"] != "sender@example.org" || rec["recipient"] != "rcpt0@example.com" || rec["schedule"] != nil {
		t.Fatalf("meta record = %s", b)
	}
	if _, ok := rec["schedule"]; !ok {
		t.Fatalf("schedule missing: %s", b)
	}
	if m, _ := rec["meta"].(map[string]any); m["tenant"] != "acme" {
		t.Fatalf("meta = %s", b)
	}
	two := testMessage(gen, 2, 10)
	two.SetSender(message.Address{}) // null sender
	b, _ = EncodeMeta(two)
	rec = nil
	_ = json.Unmarshal(b, &rec)
	if rec["sender"] != "" || !reflect.DeepEqual(rec["recipient"], []any{"rcpt0@example.com", "rcpt1@example.com"}) {
		t.Fatalf("meta record = %s", b)
	}
	// KumoMTA's own form, with a schedule object, is accepted.
	id := newID(gen)
	kumo := `{"sender":"a@b.example","recipient":["c@d.example"],"meta":{"queue":"q"},"schedule":{"first_attempt":null,"expires":null}}`
	m, err := DecodeMessage(id, []byte(kumo), []byte("x"))
	if err != nil || m.Sender().String() != "a@b.example" || len(m.Recipients()) != 1 || m.QueueName() != "q" {
		t.Fatalf("DecodeMessage = %v, %v", m, err)
	}
	for _, bad := range []string{``, `{`, `[]`, `{"sender":"a@b"}`, `{"sender":"a@b","recipient":null}`, `{"sender":"a@b","recipient":"c@d","schedule":5}`, `{"sender":"a@b","recipient":"c@d"} x`} {
		if _, err := DecodeMessage(id, []byte(bad), []byte("x")); err == nil {
			t.Errorf("DecodeMessage(%q) succeeded", bad)
		}
	}
}

func TestAddressRoundTrip(t *testing.T) {
	for _, a := range []message.Address{
		{},
		{User: "plain", Domain: "example.com"},
		{User: "first.last+tag", Domain: "Example.COM"},
		{User: "info@", Domain: "example.com"},
		{User: `we"ird\ one`, Domain: "example.com"},
		{User: "user", Domain: "[10.0.0.1]"},
		{User: "postmaster"},
		{User: "0 00"},
		{User: `"quoted"`},
		{User: "a@b"},
		{User: `"`, Domain: "x"},
	} {
		s := FormatAddress(a)
		if got := ParseStoredAddress(s); got != a {
			t.Errorf("%+v -> %q -> %+v", a, s, got)
		}
	}
}

func TestSpoolsSaveLoadRemove(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			s := openSpools(t, kind, dir)
			gen := message.NewIDGenerator()
			msgs := map[string]*message.Message{}
			for i := 0; i < 10; i++ {
				m := testMessage(gen, 1+i%3, 1000*i+1)
				if err := s.Save(ctx, m, true); err != nil {
					t.Fatal(err)
				}
				msgs[m.ID()] = m
			}
			empty := testMessage(gen, 1, 0)
			empty.SetData(nil)
			if err := s.Save(ctx, empty, true); err == nil {
				t.Fatal("Save of an empty message succeeded")
			}
			for id, want := range msgs {
				got, err := s.Load(ctx, id)
				if err != nil {
					t.Fatal(err)
				}
				sameMessage(t, got, want)
			}
			var gone string
			for id := range msgs {
				gone = id
				break
			}
			if err := s.Remove(ctx, gone); err != nil {
				t.Fatal(err)
			}
			delete(msgs, gone)
			if _, err := s.Load(ctx, gone); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Load after Remove: %v", err)
			}
			if err := s.Remove(ctx, gone); err != nil {
				t.Fatalf("second Remove: %v", err)
			}
			if ok, reason := s.Health(); !ok {
				t.Fatal(reason)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = openSpools(t, kind, dir)
			defer s.Close()
			got := map[string]*message.Message{}
			corrupt, err := s.Enumerate(ctx, func(m *message.Message) error {
				got[m.ID()] = m
				return nil
			})
			if err != nil || corrupt != 0 || len(got) != len(msgs) {
				t.Fatalf("Enumerate: %d messages, %d corrupt, %v; want %d", len(got), corrupt, err, len(msgs))
			}
			for id, want := range msgs {
				sameMessage(t, got[id], want)
			}
		})
	}
}

func TestSpoolsSaveFailureRemovesBothParts(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	data := openStore(t, spoolCfg("data", KindLocalDisk, filepath.Join(dir, "data")))
	metaCfg := spoolCfg("meta", KindLocalDisk, filepath.Join(dir, "meta"))
	metaCfg.MinFreeSpace = "100%" // every meta write fails
	meta := openStore(t, metaCfg)
	s := NewSpools(data, meta, testLog(t))
	defer s.Close()
	m := testMessage(message.NewIDGenerator(), 1, 100)
	err := s.Save(ctx, m, true)
	if !errors.Is(err, ErrDiskFull) {
		t.Fatalf("Save = %v, want ErrDiskFull", err)
	}
	if _, err := data.Get(ctx, m.ID()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("data part left after a failed Save: %v", err)
	}
	if ok, reason := s.Health(); ok || !strings.Contains(reason, "disk is too full") {
		t.Fatalf("Health = %v, %q", ok, reason)
	}
}

func TestSpoolsEnumerateSetsAsideCorrupt(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			s := openSpools(t, kind, dir)
			gen := message.NewIDGenerator()
			good := map[string]*message.Message{}
			for i := 0; i < 5; i++ {
				m := testMessage(gen, 1, 500)
				if err := s.Save(ctx, m, false); err != nil {
					t.Fatal(err)
				}
				good[m.ID()] = m
			}
			badMeta, noData, noMeta, emptyData, v4 := newID(gen), newID(gen), newID(gen), newID(gen), newID(gen)
			put := func(st Store, id, b string) {
				t.Helper()
				if err := st.Put(ctx, id, []byte(b), false); err != nil {
					t.Fatal(err)
				}
			}
			okMeta, _ := EncodeMeta(testMessage(gen, 1, 1))
			put(s.Meta(), badMeta, `{"sender": "a@b", "recipient": `) // torn JSON
			put(s.Data(), badMeta, "data")
			put(s.Meta(), noData, string(okMeta))
			put(s.Data(), noMeta, "orphan data")
			put(s.Meta(), emptyData, string(okMeta))
			put(s.Data(), emptyData, "")
			v4 = v4[:12] + "4" + v4[13:] // version nibble 4: not a v1 uuid
			put(s.Meta(), v4, string(okMeta))
			put(s.Data(), v4, "data")
			s.Close()

			s = openSpools(t, kind, dir)
			defer s.Close()
			seen := map[string]bool{}
			corrupt, err := s.Enumerate(ctx, func(m *message.Message) error {
				seen[m.ID()] = true
				return nil
			})
			if err != nil || corrupt != 5 {
				t.Fatalf("Enumerate: corrupt = %d, %v; want 5", corrupt, err)
			}
			if len(seen) != len(good) {
				t.Fatalf("enumerated %d good messages, want %d", len(seen), len(good))
			}
			for id := range good {
				if !seen[id] {
					t.Fatalf("good message %s not enumerated", id)
				}
			}
			// Set aside, not deleted, and not seen again.
			if kind == KindLocalDisk {
				ents, _ := os.ReadDir(filepath.Join(dir, "meta", "corrupt"))
				if len(ents) != 4 {
					t.Errorf("meta/corrupt holds %d entries, want 4", len(ents))
				}
				ents, _ = os.ReadDir(filepath.Join(dir, "data", "corrupt"))
				if len(ents) != 4 {
					t.Errorf("data/corrupt holds %d entries, want 4", len(ents))
				}
			} else {
				ps := s.Meta().(*pebbleStore)
				if _, c, err := ps.db.Get(corruptKey(badMeta)); err != nil {
					t.Errorf("torn meta not kept under c/: %v", err)
				} else {
					c.Close()
				}
			}
			corrupt, err = s.Enumerate(ctx, func(*message.Message) error { return nil })
			if err != nil || corrupt != 0 {
				t.Fatalf("second Enumerate: corrupt = %d, %v", corrupt, err)
			}
		})
	}
}

func TestSpoolsEnumerateSkipsConcurrentSaves(t *testing.T) {
	ctx := context.Background()
	s := openSpools(t, KindLocalDisk, t.TempDir())
	defer s.Close()
	gen := message.NewIDGenerator()
	old := testMessage(gen, 1, 100)
	if err := s.Save(ctx, old, true); err != nil {
		t.Fatal(err)
	}
	var seen []string
	corrupt, err := s.Enumerate(ctx, func(m *message.Message) error {
		seen = append(seen, m.ID())
		// new mail accepted during the restart's enumeration
		for i := 0; i < 20; i++ {
			if err := s.Save(ctx, testMessage(gen, 1, 100), true); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil || corrupt != 0 || len(seen) != 1 || seen[0] != old.ID() {
		t.Fatalf("Enumerate = %v, corrupt %d, %v", seen, corrupt, err)
	}
}

func TestSpoolsConcurrentSaves(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			s := openSpools(t, kind, dir)
			if kind == KindLocalDisk {
				d, m := s.Data().(*localDisk), s.Meta().(*localDisk)
				if d.group && d.syncer != m.syncer {
					t.Error("data and meta on one file system do not share their group commit")
				}
			}
			gen := message.NewIDGenerator()
			const writers, each = 64, 8
			var mu sync.Mutex
			saved := map[string]*message.Message{}
			var wg sync.WaitGroup
			errc := make(chan error, writers)
			for w := 0; w < writers; w++ {
				wg.Add(1)
				go func(w int) {
					defer wg.Done()
					for i := 0; i < each; i++ {
						m := testMessage(gen, 1+w%3, 2000+w*10+i)
						if err := s.Save(ctx, m, true); err != nil {
							errc <- err
							return
						}
						mu.Lock()
						saved[m.ID()] = m
						mu.Unlock()
					}
				}(w)
			}
			wg.Wait()
			close(errc)
			for err := range errc {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = openSpools(t, kind, dir)
			defer s.Close()
			n := 0
			corrupt, err := s.Enumerate(ctx, func(m *message.Message) error {
				want, ok := saved[m.ID()]
				if !ok {
					return fmt.Errorf("unexpected message %s", m.ID())
				}
				sameMessage(t, m, want)
				n++
				return nil
			})
			if err != nil || corrupt != 0 || n != writers*each {
				t.Fatalf("Enumerate: %d of %d, corrupt %d, %v", n, writers*each, corrupt, err)
			}
		})
	}
}

// TestCrashChild is the child of TestCrashSafety: it saves messages with
// sync=true from several goroutines and prints each id once Save returned,
// until it is killed.
func TestCrashChild(t *testing.T) {
	dir, kind := os.Getenv("SPOOL_CRASH_DIR"), os.Getenv("SPOOL_CRASH_KIND")
	if dir == "" {
		t.Skip("only run as TestCrashSafety's child")
	}
	s := openSpools(t, kind, dir)
	gen := message.NewIDGenerator()
	out := bufio.NewWriter(os.Stdout)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100000; i++ {
				m := testMessage(gen, 1+i%2, 20000)
				if err := s.Save(context.Background(), m, true); err != nil {
					fmt.Fprintln(os.Stderr, "save:", err)
					os.Exit(3)
				}
				mu.Lock()
				out.WriteString(m.ID() + "\n")
				out.Flush() // the id leaves the process only after Save returned
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

func TestCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary")
	}
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			dir := t.TempDir()
			cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
			cmd.Env = append(os.Environ(), "SPOOL_CRASH_DIR="+dir, "SPOOL_CRASH_KIND="+kind)
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			// Kill after 300 acknowledged saves or 3 s after the first one,
			// whichever comes first (the child gets 60 s to start).
			var acked []string
			lines := make(chan string)
			go func() {
				sc := bufio.NewScanner(stdout)
				for sc.Scan() {
					lines <- sc.Text()
				}
				close(lines)
			}()
			deadline := time.After(60 * time.Second)
			for killed := false; !killed; {
				select {
				case l, ok := <-lines:
					if !ok {
						t.Fatalf("child ended before it was killed: %v\n%s", cmd.Wait(), stderr.String())
					}
					if len(acked) == 0 {
						deadline = time.After(3 * time.Second)
					}
					acked = append(acked, l)
					killed = len(acked) >= 300
				case <-deadline:
					killed = true
				}
			}
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			for l := range lines { // what it printed before dying
				acked = append(acked, l)
			}
			_ = cmd.Wait()
			if len(acked) == 0 {
				t.Fatalf("child acknowledged nothing:\n%s", stderr.String())
			}
			s := openSpools(t, kind, dir)
			defer s.Close()
			found := map[string]*message.Message{}
			corrupt, err := s.Enumerate(context.Background(), func(m *message.Message) error {
				found[m.ID()] = m
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			lost := 0
			for _, id := range acked {
				if len(id) != 32 {
					continue // a line cut by the kill: never acknowledged
				}
				m, ok := found[id]
				if !ok {
					lost++
					t.Errorf("acknowledged message %s lost", id)
					continue
				}
				if !bytes.Equal(m.Data(), bodyFor(id, 20000)) || m.Sender().String() != "sender@example.org" {
					t.Errorf("acknowledged message %s damaged", id)
				}
			}
			t.Logf("%s: %d acknowledged, %d in the spool after the crash, %d set aside (unacknowledged halves), %d lost",
				kind, len(acked), len(found), corrupt, lost)
		})
	}
}

func TestSpoolsSaveCancelledLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	s := openSpools(t, KindLocalDisk, dir)
	d, _, ok := sharedPair(s.Data(), s.Meta())
	if !ok {
		t.Skip("no shared group commit on this system")
	}
	for round := 1; round <= 2; round++ {
		entered := make(chan struct{}, 4)
		release := make(chan struct{})
		d.syncer.fn = func(f *os.File) error {
			entered <- struct{}{}
			<-release
			return syncfs(f)
		}
		m := testMessage(message.NewIDGenerator(), 1, 1000)
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() { errc <- s.Save(ctx, m, true) }()
		for i := 1; i < round; i++ { // let the earlier rounds pass
			<-entered
			release <- struct{}{}
		}
		<-entered
		cancel()
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Fatalf("Save = %v, want context.Canceled", err)
		}
		close(release)
		if _, err := s.Load(context.Background(), m.ID()); !errors.Is(err, ErrNotFound) {
			t.Fatalf("cancelled in round %d: a part is still stored (%v)", round, err)
		}
		d.syncer.fn = syncfs
	}
	s.Close()
	for _, sub := range []string{"data/new", "meta/new"} {
		if ents, _ := os.ReadDir(filepath.Join(dir, sub)); len(ents) != 0 {
			t.Fatalf("%s holds %d files after cancelled saves", sub, len(ents))
		}
	}
}
