package sharedlimit

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/kumogo/kumogo/internal/testutil"
)

// TestLeaseTTLPerLimit: a limit's own TTL sets how long its shared leases
// live: shorter than the store's default, they are renewed often enough
// to stay while held and vanish within that TTL once their holder dies;
// longer, a dead holder's lease outlives the default.
func TestLeaseTTLPerLimit(t *testing.T) {
	r := testutil.StartRedis(t)
	ctx := context.Background()
	a, _ := sharedStore(t, r, 3*time.Second) // the default of limits with no TTL
	b, _ := sharedStore(t, r, 3*time.Second)
	short := Limit{Name: "short", Limit: 1, TTL: 600 * time.Millisecond}
	long := Limit{Name: "long", Limit: 1, TTL: 20 * time.Second}
	if _, ok := a.Acquire(ctx, short); !ok {
		t.Fatal("short lease refused")
	}
	if _, ok := a.Acquire(ctx, long); !ok {
		t.Fatal("long lease refused")
	}
	// each lease is written with its own TTL (scores are expiry ms)
	now := time.Now()
	ms := func(d time.Duration) string { return strconv.FormatInt(now.Add(d).UnixMilli(), 10) }
	if n := r.Int("ZCOUNT", limitKey("long"), ms(15*time.Second), ms(21*time.Second)); n != 1 {
		t.Fatalf("%d long leases expiring in 15-21 s, want 1", n)
	}
	if n := r.Int("ZCOUNT", limitKey("short"), ms(0), ms(time.Second)); n != 1 {
		t.Fatalf("%d short leases expiring within 1 s, want 1", n)
	}
	time.Sleep(1500 * time.Millisecond) // 2.5 short TTLs: renewed meanwhile
	if _, ok := b.Acquire(ctx, short); ok {
		t.Fatal("a held short lease expired although its holder renews it")
	}
	a.Close() // a dies without releasing
	died := time.Now()
	for {
		if l, ok := b.Acquire(ctx, short); ok {
			l.Release()
			break
		}
		if time.Since(died) > 600*time.Millisecond+400*time.Millisecond {
			t.Fatal("the dead store's short lease outlived its 600 ms TTL")
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(3 * time.Second) // past the store default: the long lease stays
	if _, ok := b.Acquire(ctx, long); ok {
		t.Fatal("the dead store's 20 s lease expired after the 3 s default TTL")
	}
}
