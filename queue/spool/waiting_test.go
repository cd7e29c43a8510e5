package spool

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/kumogo/kumogo/internal/message"
)

// TestEnumerateWaiting: the compact enumeration names every message's
// queue as msg:queue_name does (meta queue, tenant, campaign,
// routing_domain, the first recipient's domain) and keeps its schedule;
// it sets aside what does not parse; Load sets aside what it finds broken
// (data missing or empty); SweepOrphans sets aside data without meta.
func TestEnumerateWaiting(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			s := openSpools(t, kind, dir)
			gen := message.NewIDGenerator()
			want := map[string]*message.Message{}
			add := func(m *message.Message) {
				t.Helper()
				if err := s.Save(ctx, m, false); err != nil {
					t.Fatal(err)
				}
				want[m.ID()] = m
			}
			for i := 0; i < 600; i++ { // more than two batches
				m := testMessage(gen, 1+i%3, 100)
				switch i % 6 {
				case 0:
					m.SetMeta("queue", fmt.Sprintf("named-%d", i%7))
				case 1:
					m.SetMeta("campaign", "spring")
				case 2:
					m.SetMeta("routing_domain", "relay.example")
				case 3:
					m.DeleteMeta("tenant")
					m.SetMeta("queue", 5.0) // not a string: ignored
				case 4:
					m.SetRecipients([]message.Address{{User: "x", Domain: "UPPER.Example"}})
				case 5:
					w, err := message.ParseDeliveryWindow("Mon-Fri", "UTC", "09:00", "17:00")
					if err != nil {
						t.Fatal(err)
					}
					m.SetScheduling(&message.Scheduling{Expires: time.Now().Add(time.Hour).UTC().Truncate(time.Second), Window: w})
				}
				add(m)
			}
			noData, emptyData, badMeta, noMeta := newID(gen), newID(gen), newID(gen), newID(gen)
			okMeta, _ := EncodeMeta(testMessage(gen, 1, 1))
			put := func(st Store, id, b string) {
				t.Helper()
				if err := st.Put(ctx, id, []byte(b), false); err != nil {
					t.Fatal(err)
				}
			}
			put(s.Meta(), noData, string(okMeta))
			put(s.Meta(), emptyData, string(okMeta))
			put(s.Data(), emptyData, "")
			put(s.Meta(), badMeta, `{"sender": "a@b", "recipient": `)
			put(s.Data(), badMeta, "data")
			put(s.Data(), noMeta, "orphan data")
			s.Close()

			s = openSpools(t, kind, dir)
			defer s.Close()
			var mu sync.Mutex
			got := map[string]Waiting{}
			corrupt, err := s.EnumerateWaiting(ctx, func(w Waiting) error {
				mu.Lock()
				got[w.ID] = w
				mu.Unlock()
				return nil
			})
			if err != nil || corrupt != 1 {
				t.Fatalf("EnumerateWaiting: corrupt %d, %v; want 1 (the torn meta)", corrupt, err)
			}
			if len(got) != len(want)+2 {
				t.Fatalf("%d enumerated, want %d (and the two without data)", len(got), len(want)+2)
			}
			for id, m := range want {
				w := got[id]
				if w.Queue != m.QueueName() {
					t.Fatalf("%s: queue %q, want %q (meta %v)", id, w.Queue, m.QueueName(), m.MetaMap())
				}
				if s, ws := m.Scheduling(), w.Scheduling; (s == nil) != (ws == nil) ||
					s != nil && (!s.Expires.Equal(ws.Expires) || !reflect.DeepEqual(s.Window.Days, ws.Window.Days) || s.Window.Start != ws.Window.Start) {
					t.Fatalf("%s: scheduling %+v, want %+v", id, ws, s)
				}
			}
			for _, id := range []string{noData, emptyData} {
				if _, err := s.Load(ctx, id); !errors.Is(err, ErrNotFound) {
					t.Fatalf("Load of a broken entry: %v", err)
				}
				if _, err := s.Meta().Get(ctx, id); !errors.Is(err, ErrNotFound) {
					t.Fatalf("a broken entry was not set aside: %v", err)
				}
			}
			n, err := s.SweepOrphans(ctx)
			if err != nil || n != 1 {
				t.Fatalf("SweepOrphans = %d, %v; want 1", n, err)
			}
			if _, err := s.Data().Get(ctx, noMeta); !errors.Is(err, ErrNotFound) {
				t.Fatalf("orphan data still live: %v", err)
			}
			// nothing broken is left
			got = map[string]Waiting{}
			corrupt, err = s.EnumerateWaiting(ctx, func(w Waiting) error {
				mu.Lock()
				got[w.ID] = w
				mu.Unlock()
				return nil
			})
			if err != nil || corrupt != 0 || len(got) != len(want) {
				t.Fatalf("second EnumerateWaiting: %d, corrupt %d, %v", len(got), corrupt, err)
			}
			if n, err := s.SweepOrphans(ctx); n != 0 || err != nil {
				t.Fatalf("second sweep %d %v", n, err)
			}
			// an error from fn stops it
			stop := errors.New("stop")
			if _, err := s.EnumerateWaiting(ctx, func(Waiting) error { return stop }); !errors.Is(err, stop) {
				t.Fatalf("EnumerateWaiting returned %v, want the callback's error", err)
			}
		})
	}
}

// BenchmarkEnumerateWaiting compares the compact enumeration with the full
// one (which reads every body and builds every message) on 20,000 stored
// messages of 4 KB.
func BenchmarkEnumerateWaiting(b *testing.B) {
	for _, kind := range kinds {
		b.Run(kind, func(b *testing.B) {
			ctx := context.Background()
			s := openSpools(b, kind, b.TempDir())
			defer s.Close()
			gen := message.NewIDGenerator()
			const n = 20000
			for i := 0; i < n; i++ {
				m := testMessage(gen, 1, 4096)
				m.SetMeta("received_from", "127.0.0.1:54321")
				m.SetMeta("reception_protocol", "HTTP")
				if err := s.Save(ctx, m, false); err != nil {
					b.Fatal(err)
				}
			}
			b.Run("full", func(b *testing.B) {
				for range b.N {
					if _, err := s.Enumerate(ctx, func(*message.Message) error { return nil }); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "msgs/s")
			})
			b.Run("waiting", func(b *testing.B) {
				for range b.N {
					if _, err := s.EnumerateWaiting(ctx, func(Waiting) error { return nil }); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "msgs/s")
			})
		})
	}
}
