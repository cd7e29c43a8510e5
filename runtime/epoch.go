package runtime

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/bmatcuk/doublestar/v4"
	lua "github.com/yuin/gopher-lua"
)

// DefaultConfigMonitorGlobs are the files whose change bumps the
// configuration epoch unless the policy sets its own
// (kumo.set_config_monitor_globs; KumoMTA's default).
var DefaultConfigMonitorGlobs = []string{"/opt/kumomta/etc/**/*.{lua,json,toml,yaml}"}

// ConfigMonitorInterval is how often the monitor evaluates the globs, as
// KumoMTA's config monitor does.
const ConfigMonitorInterval = 10 * time.Second

// epochState is the configuration epoch: a counter bumped when a
// monitored file changes or kumo.bump_config_epoch is called. A bump
// retires every Lua state of an older epoch (new states run the policy
// file again, re-read from disk), forgets compiled modules, and empties
// the memoize caches made with invalidate_with_epoch.
type epochState struct {
	mu      sync.Mutex
	globs   []string // nil: DefaultConfigMonitorGlobs
	lastSum [sha256.Size]byte
	summed  bool
}

// Epoch returns the current configuration epoch.
func (r *Runtime) Epoch() uint64 { return r.epochN.Load() }

// BumpEpoch starts a new configuration epoch.
func (r *Runtime) BumpEpoch() {
	if r.opts.Source == nil && r.opts.PolicyPath != "" {
		src, err := os.ReadFile(r.opts.PolicyPath)
		if err == nil {
			var proto *lua.FunctionProto
			if proto, err = compileChunk(src, r.chunkName); err == nil {
				r.protoMu.Lock()
				r.proto = proto
				r.protoMu.Unlock()
			}
		}
		if err != nil {
			r.log.Error().Err(err).Msg("config epoch: keeping the previous policy")
		}
	}
	r.modMu.Lock()
	clear(r.modCache)
	clear(r.searchCache)
	r.modMu.Unlock()
	r.memo.purgeEpoch()
	// data built by the policy-extras helpers is rebuilt from its files
	r.extras.reset()
	n := r.epochN.Add(1)
	r.log.Info().Uint64("epoch", n).Msg("config epoch bumped")
}

func (r *Runtime) policyProto() *lua.FunctionProto {
	r.protoMu.Lock()
	defer r.protoMu.Unlock()
	return r.proto
}

// MonitoredFiles evaluates the config monitor globs: the matching files,
// sorted.
func (r *Runtime) MonitoredFiles() ([]string, error) {
	r.epoch.mu.Lock()
	globs := r.epoch.globs
	r.epoch.mu.Unlock()
	if globs == nil {
		globs = DefaultConfigMonitorGlobs
	}
	var out []string
	for _, g := range globs {
		m, err := doublestar.FilepathGlob(g, doublestar.WithFilesOnly())
		if err != nil {
			return nil, fmt.Errorf("config monitor glob %q: %w", g, err)
		}
		out = append(out, m...)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// CheckConfigFiles hashes the monitored files' names and contents and
// bumps the epoch when the hash differs from the previous check (the
// first check only records it). It reports whether it bumped.
func (r *Runtime) CheckConfigFiles() (bool, error) {
	files, err := r.MonitoredFiles()
	if err != nil {
		return false, err
	}
	h := sha256.New()
	for _, f := range files {
		fmt.Fprintf(h, "%s\x00", f)
		if fh, err := os.Open(f); err == nil {
			_, _ = io.Copy(h, fh)
			fh.Close()
		}
		h.Write([]byte{0})
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	r.epoch.mu.Lock()
	changed := r.epoch.summed && sum != r.epoch.lastSum
	r.epoch.lastSum, r.epoch.summed = sum, true
	r.epoch.mu.Unlock()
	if changed {
		r.BumpEpoch()
	}
	return changed, nil
}

// RunConfigMonitor checks the monitored files every interval until ctx
// ends (the daemon runs it after init).
func (r *Runtime) RunConfigMonitor(ctx context.Context, interval time.Duration) {
	if _, err := r.CheckConfigFiles(); err != nil {
		r.log.Error().Err(err).Msg("config monitor")
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := r.CheckConfigFiles(); err != nil {
				r.log.Error().Err(err).Msg("config monitor")
			}
		}
	}
}

// openEpoch adds the config epoch functions to kumo.
func (st *state) openEpoch(k *lua.LTable) {
	L := st.L
	r := st.rt
	L.SetFuncs(k, map[string]lua.LGFunction{
		"bump_config_epoch": func(L *lua.LState) int {
			if !r.opts.Validating {
				r.BumpEpoch()
			}
			return 0
		},
		"set_config_monitor_globs": func(L *lua.LState) int {
			t := L.CheckTable(1)
			globs := []string{}
			for i := 1; i <= t.Len(); i++ {
				s, ok := t.RawGetInt(i).(lua.LString)
				if !ok || !doublestar.ValidatePattern(string(s)) {
					L.ArgError(1, fmt.Sprintf("entry %d is not a valid glob", i))
				}
				globs = append(globs, string(s))
			}
			r.epoch.mu.Lock()
			r.epoch.globs = globs
			r.epoch.mu.Unlock()
			return 0
		},
		"eval_config_monitor_globs": func(L *lua.LState) int {
			files, err := r.MonitoredFiles()
			if err != nil {
				L.RaiseError("eval_config_monitor_globs: %s", err.Error())
			}
			out := L.CreateTable(len(files), 0)
			for _, f := range files {
				out.Append(lua.LString(f))
			}
			L.Push(out)
			return 1
		},
	})
}
