// Package memguard watches the process's memory the way KumoMTA does
// (KumoMTA's docs, "Memory Management"): the memory available is taken from
// the cgroup (v2 before v1), else from RLIMIT_AS/RLIMIT_DATA, else from the
// physical RAM; the limit is 75% of that. Usage is the cgroup's (less its
// reclaimable page cache) when a cgroup limit applies, else the resident
// set size. While usage is at or above the limit the guard is over limit:
// Health reports it so that new work is refused (load shedding), and the
// functions registered with OnOverLimit (cache releases) run once at each
// crossing. memory_usage, memory_limit and memory_over_limit_count are
// available as Usage, Limit and OverLimitCount for the metrics endpoint.
package memguard

import (
	"context"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// SoftPercent is the share of the available memory that is the limit.
const SoftPercent = 75

// Source tells where the available memory figure came from.
type Source string

// Sources of the available memory figure.
const (
	SourceCgroupV2 Source = "cgroup v2 memory.max"
	SourceCgroupV1 Source = "cgroup v1 memory.limit_in_bytes"
	SourceRlimitAS Source = "RLIMIT_AS"
	SourceRlimitDS Source = "RLIMIT_DATA"
	SourcePhysical Source = "physical memory"
	SourceSet      Source = "configured"
)

// Options configure a Guard. The zero value detects everything from the
// running system.
type Options struct {
	// Root is prepended to /proc and /sys paths (tests point it at a
	// fake tree). Empty means the real ones.
	Root string
	// Limit, when positive, replaces the detected limit (bytes), as
	// kumo.set_memory_soft_limit does in KumoMTA.
	Limit int64
	// Usage, when set, replaces the usage reading (tests).
	Usage func() (int64, error)
}

// Guard samples memory usage and decides whether the process is over its
// limit. Its methods are safe for concurrent use.
type Guard struct {
	sys       system
	usageFn   func() (int64, error)
	available int64
	source    Source

	limit     atomic.Int64
	usage     atomic.Int64
	over      atomic.Bool
	overCount atomic.Uint64

	mu     sync.Mutex
	onOver []func()
}

// New detects the available memory and returns a guard whose limit is
// SoftPercent of it (or opts.Limit). Call Sample or Run to read usage.
func New(opts Options) *Guard {
	g := &Guard{sys: system{root: opts.Root}}
	g.available, g.source = g.sys.available()
	limit := g.available / 100 * SoftPercent
	if opts.Limit > 0 {
		limit, g.source = opts.Limit, SourceSet
	}
	g.limit.Store(limit)
	g.usageFn = opts.Usage
	if g.usageFn == nil {
		g.usageFn = func() (int64, error) { return g.sys.usage(g.source) }
	}
	return g
}

// Available returns the memory detected as available to the process and
// where the figure came from.
func (g *Guard) Available() (int64, Source) { return g.available, g.source }

// Limit is memory_limit: the usage, in bytes, above which load is shed.
func (g *Guard) Limit() int64 { return g.limit.Load() }

// SetLimit replaces the limit (bytes, > 0).
func (g *Guard) SetLimit(n int64) {
	if n > 0 {
		g.limit.Store(n)
	}
}

// Usage is memory_usage: the last sampled usage in bytes.
func (g *Guard) Usage() int64 { return g.usage.Load() }

// OverLimitCount is memory_over_limit_count: how many times usage crossed
// the limit.
func (g *Guard) OverLimitCount() uint64 { return g.overCount.Load() }

// OverLimit reports whether the last sample was at or above the limit.
func (g *Guard) OverLimit() bool { return g.over.Load() }

// LoadShedding is the reason Health gives while over the limit (KumoMTA's
// text, also the liveness check's body); listeners answer it with their
// load-shedding reply rather than the storage one.
const LoadShedding = "load shedding"

// Health is the load-shedding check for listeners: not ok while over the
// limit, with KumoMTA's reason text.
func (g *Guard) Health() (ok bool, reason string) {
	if g.over.Load() {
		return false, LoadShedding
	}
	return true, ""
}

// OnOverLimit registers fn to run (on the sampling goroutine) each time
// usage crosses the limit, to release caches.
func (g *Guard) OnOverLimit(fn func()) {
	g.mu.Lock()
	g.onOver = append(g.onOver, fn)
	g.mu.Unlock()
}

// Sample reads usage once and updates the over-limit state. It reports
// whether this sample crossed the limit upwards.
func (g *Guard) Sample() (crossed bool, err error) {
	u, err := g.usageFn()
	if err != nil {
		return false, err
	}
	g.usage.Store(u)
	over := u >= g.limit.Load()
	if g.over.Swap(over) || !over {
		return false, nil
	}
	g.overCount.Add(1)
	g.mu.Lock()
	fns := append([]func(){}, g.onOver...)
	g.mu.Unlock()
	for _, fn := range fns {
		fn()
	}
	debug.FreeOSMemory()
	return true, nil
}

// Run samples every interval until ctx ends. report, when set, is told of
// every crossing in either direction.
func (g *Guard) Run(ctx context.Context, interval time.Duration, report func(over bool, usage, limit int64)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		was := g.over.Load()
		if _, err := g.Sample(); err == nil && report != nil {
			if now := g.over.Load(); now != was {
				report(now, g.Usage(), g.Limit())
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// SetGoMemoryLimit sets the Go runtime's soft memory limit to 90% of the
// available memory, unless GOMEMLIMIT is set, so that the collector works
// harder before the kernel's limit is reached rather than after. It
// returns the value set (0 when it left the runtime alone).
func (g *Guard) SetGoMemoryLimit(gomemlimitEnv string) int64 {
	if gomemlimitEnv != "" || g.available <= 0 {
		return 0
	}
	n := g.available / 10 * 9
	debug.SetMemoryLimit(n)
	return n
}
