package sharedlimit

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/kumogo/kumogo/internal/testutil"
)

// TestWaitersAskOneAtATime: three stores (three nodes) with ten waiters
// each share a connection limit of 2 through Redis; every holder keeps its
// slot 100 ms. The budget is never exceeded, every waiter gets its turn,
// and while the limit is full each node asks Redis about once per poll
// interval rather than once per waiter and interval.
func TestWaitersAskOneAtATime(t *testing.T) {
	r := testutil.StartRedis(t)
	var stores []*Store
	for range 3 {
		s, _ := sharedStore(t, r, 5*time.Second)
		stores = append(stores, s)
	}
	limits := []Limit{{Name: "conns", Limit: 2}}
	if r.Do("CONFIG", "RESETSTAT") != "+OK" {
		t.Fatal("CONFIG RESETSTAT failed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var held, most, got atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for _, s := range stores {
		for range 10 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				leases, ok := s.AcquireAllWait(ctx, limits)
				if !ok {
					t.Error("a waiter gave up")
					return
				}
				n := held.Add(1)
				for {
					m := most.Load()
					if n <= m || most.CompareAndSwap(m, n) {
						break
					}
				}
				time.Sleep(100 * time.Millisecond)
				held.Add(-1)
				got.Add(1)
				for _, l := range leases {
					l.Release()
				}
			}()
		}
	}
	wg.Wait()
	took := time.Since(start)
	if got.Load() != 30 {
		t.Fatalf("%d of 30 waiters got a slot", got.Load())
	}
	if most.Load() > 2 {
		t.Fatalf("%d slots held at once, limit 2", most.Load())
	}
	// every waiter's first ask (before the limit is known full), one
	// more per grant (a release here lets a waiter ask at once), and
	// otherwise at most one ask per node per 50 ms (the shortest poll
	// interval); waiters asking each on their own would make several
	// times as many.
	asks := r.Calls("evalsha") + r.Calls("eval")
	bound := 30 + 30 + 3*int(took/(50*time.Millisecond)+1)
	t.Logf("%d asks in %v (bound %d)", asks, took, bound)
	if asks > bound {
		t.Fatalf("%d acquire calls to Redis in %v, want at most %d", asks, took, bound)
	}
}

// TestLocalReleaseWakesWaiter: a waiter for a full limit gets the slot as
// soon as a holder in the same process releases it, not at its next poll
// (made an hour here).
func TestLocalReleaseWakesWaiter(t *testing.T) {
	s := New(zerolog.Nop())
	s.poll = func() time.Duration { return time.Hour }
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	limits := []Limit{{Name: "conns", Limit: 1}}
	first, ok := s.AcquireAllWait(ctx, limits)
	if !ok {
		t.Fatal("the first slot was refused")
	}
	gotAt := make(chan time.Time, 1)
	go func() {
		if _, ok := s.AcquireAllWait(ctx, limits); ok {
			gotAt <- time.Now()
		}
		close(gotAt)
	}()
	// let the waiter find the limit full and start waiting
	time.Sleep(150 * time.Millisecond)
	freed := time.Now()
	first[0].Release()
	at, ok := <-gotAt
	if !ok {
		t.Fatal("the waiter gave up")
	}
	if d := at.Sub(freed); d > 2*time.Second {
		t.Fatalf("the waiter got the slot %v after its release", d)
	}
	if n := s.LocalLeases("conns"); n != 1 {
		t.Fatalf("%d local leases held, want 1", n)
	}
}

// TestWaitHoldsNothingWhileBlocked: with two limits, a waiter blocked on
// the second holds no slot of the first meanwhile.
func TestWaitHoldsNothingWhileBlocked(t *testing.T) {
	s := New(zerolog.Nop())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	small := Limit{Name: "small", Limit: 1}
	big := Limit{Name: "big", Limit: 5}
	blocker, ok := s.Acquire(ctx, small)
	if !ok {
		t.Fatal("refused")
	}
	done := make(chan bool, 1)
	go func() {
		_, ok := s.AcquireAllWait(ctx, []Limit{big, small})
		done <- ok
	}()
	for range 10 {
		time.Sleep(30 * time.Millisecond)
		if n := s.LocalLeases("big"); n != 0 {
			// a slot taken and given back within one try is fine; one
			// kept across polls is not
			time.Sleep(5 * time.Millisecond)
			if n := s.LocalLeases("big"); n != 0 {
				t.Fatalf("%d slots of the other limit held while waiting", n)
			}
		}
	}
	blocker.Release()
	if !<-done {
		t.Fatal("the waiter gave up")
	}
	if s.LocalLeases("big") != 1 || s.LocalLeases("small") != 1 {
		t.Fatalf("held big=%d small=%d, want 1 and 1", s.LocalLeases("big"), s.LocalLeases("small"))
	}
}
