package sharedlimit

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/kumogo/kumogo/internal/testutil"
	"github.com/kumogo/kumogo/internal/throttle"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func sharedStore(t *testing.T, r *testutil.RedisServer, ttl time.Duration) (*Store, *syncBuf) {
	t.Helper()
	buf := &syncBuf{}
	s := New(zerolog.New(buf))
	if err := s.ConfigureRedis(context.Background(), RedisConfig{Nodes: []string{r.URL()}, LeaseTTL: ttl}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s, buf
}

// count runs Wait on spec from every store at once for d and returns how
// many events went through.
func count(stores []*Store, name string, spec throttle.Spec, d time.Duration) int64 {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var n atomic.Int64
	var wg sync.WaitGroup
	for _, s := range stores {
		for range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					if _, ok := s.Wait(ctx, name, spec); !ok {
						return
					}
					n.Add(1)
				}
			}()
		}
	}
	wg.Wait()
	return n.Load()
}

// TestSharedRateAcrossStores: two stores (two nodes) on one Redis share a
// throttle: together they get the configured rate, within 10 %; with the
// local: prefix each gets its own.
func TestSharedRateAcrossStores(t *testing.T) {
	r := testutil.StartRedis(t)
	a, _ := sharedStore(t, r, 0)
	b, _ := sharedStore(t, r, 0)
	spec, _ := throttle.Parse("20/s,max_burst=1")
	// 2 s at 20/s with no burst: 1 + 40 events
	if n := count([]*Store{a, b}, "shared", spec, 2*time.Second); n < 37 || n > 45 {
		t.Errorf("shared 20/s over 2 s from two stores: %d events, want 41 ± 10 %%", n)
	}
	local, _ := throttle.Parse("local:20/s,max_burst=1")
	if n := count([]*Store{a, b}, "shared-local", local, 2*time.Second); n < 74 || n > 90 {
		t.Errorf("local:20/s over 2 s in two stores: %d events, want 82 ± 10 %%", n)
	}
	if got := r.Do("EXISTS", "kumogo:throttle:shared-local"); got != ":0" {
		t.Errorf("a local: throttle reached Redis: EXISTS says %s", got)
	}
	res := a.Throttle(context.Background(), "report", spec)
	if res.Throttled || res.Limit != 1 {
		t.Errorf("first event: %+v", res)
	}
	res = b.Throttle(context.Background(), "report", spec)
	if !res.Throttled || res.RetryAfter <= 0 || res.RetryAfter > 50*time.Millisecond {
		t.Errorf("second event from the other store: %+v", res)
	}
}

// TestSharedLeases: a connection limit is one budget across stores; a
// lease is renewed while held, and the leases of a store that stops
// without releasing them (a node killed) expire after the lease TTL.
func TestSharedLeases(t *testing.T) {
	r := testutil.StartRedis(t)
	ttl := 900 * time.Millisecond
	a, _ := sharedStore(t, r, ttl)
	b, _ := sharedStore(t, r, ttl)
	ctx := context.Background()
	l1, ok1 := a.TryAcquire(ctx, "conns", 2, false)
	l2, ok2 := a.TryAcquire(ctx, "conns", 2, false)
	if !ok1 || !ok2 {
		t.Fatal("first two leases refused")
	}
	if _, ok := b.TryAcquire(ctx, "conns", 2, false); ok {
		t.Fatal("a third lease of a limit of 2 was granted to the other store")
	}
	// local limits of the same name are not shared
	if _, ok := b.TryAcquire(ctx, "conns", 2, true); !ok {
		t.Fatal("a local lease was refused")
	}
	time.Sleep(3 * ttl) // renewed meanwhile
	if _, ok := b.TryAcquire(ctx, "conns", 2, false); ok {
		t.Fatal("held leases expired although renewed")
	}
	l1.Release()
	l3, ok := b.TryAcquire(ctx, "conns", 2, false)
	if !ok {
		t.Fatal("a released lease was not given back")
	}
	_ = l2
	a.Close() // stops renewing; l2 stays in Redis until it expires
	if _, ok := b.TryAcquire(ctx, "conns", 2, false); ok {
		t.Fatal("the dead store's lease vanished before its TTL")
	}
	deadline := time.Now().Add(ttl + 500*time.Millisecond)
	for {
		if l, ok := b.TryAcquire(ctx, "conns", 2, false); ok {
			l.Release()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the dead store's lease was not released within the TTL (%v)", ttl)
		}
		time.Sleep(50 * time.Millisecond)
	}
	l3.Release()
	if n := r.Int("ZCARD", "kumogo:limit:conns"); n > 0 {
		t.Errorf("%d leases left in Redis after all were released", n)
	}
}

// TestRedisOutage: with Redis gone, throttles and limits answer from the
// local state at once and the log says so; when Redis is back, sharing
// resumes by itself and the log says that too.
func TestRedisOutage(t *testing.T) {
	r := testutil.StartRedis(t)
	s, log := sharedStore(t, r, 0)
	ctx := context.Background()
	// 10/m: the key holding the bucket lives 6 s after an event
	spec, _ := throttle.Parse("10/m")
	if s.Throttle(ctx, "x", spec).Throttled {
		t.Fatal("throttled at once")
	}
	r.Stop()
	start := time.Now()
	for range 100 {
		s.Throttle(ctx, "y", spec)
	}
	if l, ok := s.TryAcquire(ctx, "conns", 1, false); !ok {
		t.Fatal("no local lease during the outage")
	} else {
		l.Release()
	}
	// one refused dial, then Redis is left alone for a second: a retrying
	// dialer (go-redis's default, 5 dials 100 ms apart) would take 400 ms
	if el := time.Since(start); el > 300*time.Millisecond {
		t.Errorf("100 checks during the outage took %v", el)
	}
	if !strings.Contains(log.String(), "redis shared throttles unavailable; delivery goes on with local limits") {
		t.Errorf("outage not logged:\n%s", log.String())
	}
	if n := strings.Count(log.String(), "unavailable"); n != 1 {
		t.Errorf("outage logged %d times, want once (rate-limited)", n)
	}
	r.Start()
	deadline := time.Now().Add(5 * time.Second)
	for r.Do("EXISTS", "kumogo:throttle:x") != ":1" {
		if time.Now().After(deadline) {
			t.Fatalf("throttles did not reach Redis again after it came back:\n%s", log.String())
		}
		s.Throttle(ctx, "x", spec)
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(log.String(), "redis shared throttles reachable again") {
		t.Errorf("recovery not logged:\n%s", log.String())
	}
}

// TestConfigureWhileRedisDown: a node configured while Redis is down
// starts with local limits (and says so), and shares them once Redis is
// up; a malformed URL is an error.
func TestConfigureWhileRedisDown(t *testing.T) {
	r := testutil.StartRedis(t)
	r.Stop()
	buf := &syncBuf{}
	s := New(zerolog.New(buf))
	defer s.Close()
	if err := s.ConfigureRedis(context.Background(), RedisConfig{Nodes: []string{"http://nope"}}); err == nil {
		t.Fatal("a non-redis URL was accepted")
	}
	if err := s.ConfigureRedis(context.Background(), RedisConfig{Nodes: []string{r.URL()}}); err != nil {
		t.Fatalf("configuring while Redis is down: %v", err)
	}
	if !strings.Contains(buf.String(), "redis shared throttles unavailable") {
		t.Errorf("outage at start not logged:\n%s", buf.String())
	}
	spec, _ := throttle.Parse("10/m")
	if s.Throttle(context.Background(), "z", spec).Throttled {
		t.Fatal("the local fallback throttled the first event")
	}
	r.Start()
	deadline := time.Now().Add(5 * time.Second)
	for r.Do("EXISTS", "kumogo:throttle:z") != ":1" {
		if time.Now().After(deadline) {
			t.Fatalf("no sharing after Redis came up:\n%s", buf.String())
		}
		s.Throttle(context.Background(), "z", spec)
		time.Sleep(50 * time.Millisecond)
	}
}
