package sharedlimit

import (
	"context"
	"testing"

	"github.com/rs/zerolog"

	"github.com/kumogo/kumogo/internal/testutil"
	"github.com/kumogo/kumogo/internal/throttle"
)

// The cost of one throttle check, as each delivered message pays it once
// per message rate of its egress path: local (a mutex and arithmetic) and
// shared (one EVALSHA round trip to a redis-server on loopback), serially
// and from 8 goroutines per CPU at once.

func benchStore(b *testing.B, shared bool) *Store {
	s := New(zerolog.Nop())
	if shared {
		r := testutil.StartRedis(b)
		if err := s.ConfigureRedis(context.Background(), RedisConfig{Nodes: []string{r.URL()}}); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(s.Close)
	}
	return s
}

func benchThrottle(b *testing.B, shared, parallel bool) {
	s := benchStore(b, shared)
	spec, _ := throttle.Parse("1,000,000,000/s")
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	if parallel {
		b.SetParallelism(8)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if s.Throttle(ctx, "bench", spec).Throttled {
					b.Error("throttled")
				}
			}
		})
		return
	}
	for b.Loop() {
		if s.Throttle(ctx, "bench", spec).Throttled {
			b.Fatal("throttled")
		}
	}
}

func BenchmarkThrottleLocal(b *testing.B)         { benchThrottle(b, false, false) }
func BenchmarkThrottleRedis(b *testing.B)         { benchThrottle(b, true, false) }
func BenchmarkThrottleRedisParallel(b *testing.B) { benchThrottle(b, true, true) }
func BenchmarkThrottleLocalParallel(b *testing.B) { benchThrottle(b, false, true) }
