package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/kumogo/kumogo/internal/memguard"
	"github.com/kumogo/kumogo/runtime"
)

// memorySampleInterval is how often the process memory guard reads usage.
const memorySampleInterval = time.Second

// luaMemoryLimit returns runtime.Options.LuaMemoryLimit from --lua-memory-limit,
// else KUMOGO_LUA_MEMORY_LIMIT, else 0 (runtime's default, 256 MiB).
// "off" (or "unlimited", "0") turns the limit off.
func luaMemoryLimit(flagValue string) (int64, error) {
	v := flagValue
	name := "--lua-memory-limit"
	if v == "" {
		v, name = os.Getenv("KUMOGO_LUA_MEMORY_LIMIT"), "KUMOGO_LUA_MEMORY_LIMIT"
	}
	if v == "" {
		return 0, nil
	}
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "off", "unlimited", "none", "0":
		return -1, nil
	}
	n, err := parseByteSize(v)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", name, err)
	}
	return n, nil
}

// parseByteSize reads "268435456", "256MiB", "256 MB", "1g"...: binary
// multiples for KiB/MiB/GiB and for the bare letters, decimal for kB/MB/GB.
func parseByteSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	num, err := strconv.ParseFloat(t[:i], 64)
	if err != nil || num <= 0 {
		return 0, fmt.Errorf("invalid size %q", s)
	}
	mult := map[string]float64{
		"": 1, "b": 1,
		"k": 1 << 10, "kib": 1 << 10, "kb": 1e3,
		"m": 1 << 20, "mib": 1 << 20, "mb": 1e6,
		"g": 1 << 30, "gib": 1 << 30, "gb": 1e9,
	}[strings.ToLower(strings.TrimSpace(t[i:]))]
	if mult == 0 {
		return 0, fmt.Errorf("invalid size %q (use bytes or KiB, MiB, GiB, kB, MB, GB)", s)
	}
	return int64(num * mult), nil
}

// The daemon serves runtime.MemoryHost: kumo.set_memory_soft_limit and
// friends act on its memory guard.
var _ runtime.MemoryHost = (*daemon)(nil)

func (d *daemon) SetMemorySoftLimit(n int64) {
	d.memSoftSet.Store(true)
	d.mem.SetLimit(n)
}

func (d *daemon) SetMemoryHardLimit(n int64) {
	// KumoMTA derives the soft limit from the hard one (75%) unless the
	// soft one was set; kumogo keeps the same rule for a hard limit given
	// before any soft limit.
	if !d.memSoftSet.Load() {
		d.mem.SetLimit(n / 100 * memguard.SoftPercent)
	}
	d.memHard.Store(n)
}

func (d *daemon) MemorySoftLimit() int64 { return d.mem.Limit() }

func (d *daemon) MemoryHardLimit() int64 {
	if n := d.memHard.Load(); n > 0 {
		return n
	}
	n, _ := d.mem.Available()
	return n
}

// newMemoryGuard detects the process's memory limit and logs it.
func (d *daemon) newMemoryGuard() {
	d.mem = memguard.New(memguard.Options{})
	avail, src := d.mem.Available()
	ev := d.log.Debug().Int64("available", avail).Str("source", string(src)).Int64("memory_limit", d.mem.Limit())
	if n := d.mem.SetGoMemoryLimit(os.Getenv("GOMEMLIMIT")); n > 0 {
		ev = ev.Int64("go_memory_limit", n)
	}
	ev.Msg("memory limits")
}

// runMemoryGuard samples memory until ctx ends. Crossing the limit sheds
// load (listeners refuse new sessions through health, the liveness check
// fails) and releases what can be rebuilt: pooled Lua states, the DNS
// cache and Go's free heap.
func (d *daemon) runMemoryGuard(ctx context.Context) {
	d.mem.OnOverLimit(func() {
		n := d.rt.ReleaseSpare()
		d.mu.Lock()
		res := d.res
		d.mu.Unlock()
		if res != nil {
			res.FlushCache()
		}
		d.log.Debug().Int("lua_states", n).Msg("memory over limit: caches released")
	})
	d.mem.Run(ctx, memorySampleInterval, func(over bool, usage, limit int64) {
		if over {
			d.log.Warn().Int64("memory_usage", usage).Int64("memory_limit", limit).Msg("memory over limit: shedding load (new sessions get 421)")
		} else {
			d.log.Info().Int64("memory_usage", usage).Int64("memory_limit", limit).Msg("memory back under its limit: accepting again")
		}
	})
}

// health is the listeners' health check: memory first, then the spool's
// free-space floors.
func (d *daemon) health(spoolHealth func() (bool, string)) func() (bool, string) {
	return func() (bool, string) {
		if ok, reason := d.mem.Health(); !ok {
			return false, reason
		}
		return spoolHealth()
	}
}
