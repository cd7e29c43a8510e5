package queue

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/logrecord"
	"github.com/kumogo/kumogo/internal/message"
)

// epochPolicy is fakePolicy with a configuration epoch, counting the
// egress path evaluations.
type epochPolicy struct {
	*fakePolicy
	epoch atomic.Uint64
	evals atomic.Int64
}

func (p *epochPolicy) Epoch() uint64 { return p.epoch.Load() }
func (p *epochPolicy) GetEgressPathConfig(ctx context.Context, rd, src, site string) (config.EgressPath, error) {
	p.evals.Add(1)
	return p.fakePolicy.GetEgressPathConfig(ctx, rd, src, site)
}

// TestEgressPathRefreshStrategy: an egress path with refresh_strategy
// "Epoch" is evaluated again for the next message after the config epoch
// changes (how traffic shaping automation's overrides reach the ready
// queues), one with "Ttl" only after its refresh_interval.
func TestEgressPathRefreshStrategy(t *testing.T) {
	for _, strategy := range []string{"Epoch", "Ttl"} {
		t.Run(strategy, func(t *testing.T) {
			h := &harness{spool: &memSpool{ids: map[string]bool{}}, log: &recLog{},
				conn: &fakeConnector{tries: map[string]int{}, script: ok250}}
			h.pol = &fakePolicy{cfg: config.DefaultQueueConfig(), path: config.DefaultEgressPath()}
			h.pol.path.IdleTimeout = 100 * time.Millisecond
			h.pol.path.RefreshStrategy = strategy
			pol := &epochPolicy{fakePolicy: h.pol}
			m, err := New(Options{Policy: pol, Spool: h.spool, Logger: h.log, Router: &fakeRouter{}, Connector: h.conn, Log: zerolog.Nop()})
			if err != nil {
				t.Fatal(err)
			}
			m.Start()
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				m.Shutdown(ctx)
			})
			h.m = m
			h.gen = message.NewIDGenerator()
			send := func(n int) {
				h.inject(t, "u")
				waitFor(t, "delivery", 5*time.Second, func() bool { return h.log.Count(logrecord.Delivery) == n })
			}
			send(1)
			send(2)
			if got := pol.evals.Load(); got != 1 {
				t.Fatalf("%d egress path evaluations for two messages in one epoch, want 1", got)
			}
			pol.epoch.Add(1)
			send(3)
			want := int64(2)
			if strategy == "Ttl" {
				want = 1
			}
			if got := pol.evals.Load(); got != want {
				t.Fatalf("%d egress path evaluations after an epoch bump, want %d", got, want)
			}
		})
	}
}
