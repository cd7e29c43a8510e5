package runtime

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// TestConfigEpoch: a changed monitored file bumps the epoch; states of
// the old epoch are retired (the policy file is run again, re-read from
// disk) and invalidate_with_epoch caches are emptied, the others kept.
func TestConfigEpoch(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "d.json")
	writeFile(t, data, `{"v": 1}`)
	policy := filepath.Join(dir, "policy.lua")
	src := func(tag string) string {
		return `
TAG = '` + tag + `'
kumo.set_config_monitor_globs { '` + dir + `/*.json', '` + dir + `/sub/**/*.toml' }
local epochal = kumo.memoize(function() return kumo.json_load('` + data + `').v end,
  { name = 'e', ttl = '1h', capacity = 1, invalidate_with_epoch = true })
local sticky = kumo.memoize(function() return kumo.json_load('` + data + `').v end,
  { name = 's', ttl = '1h', capacity = 1 })
kumo.on('t', function() return TAG, epochal(), sticky(), kumo.eval_config_monitor_globs() end)`
	}
	writeFile(t, policy, src("one"))
	writeFile(t, filepath.Join(dir, "sub", "x", "y.toml"), "")
	r, err := New(Options{PolicyPath: policy})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := r.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	call := func() []any {
		out, err := r.Call(context.Background(), "t")
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	out := call()
	if out[0] != "one" || out[1] != int64(1) || out[2] != int64(1) {
		t.Fatalf("out = %v", out)
	}
	files := out[3].([]any)
	if len(files) != 2 || files[0] != data || files[1] != filepath.Join(dir, "sub", "x", "y.toml") {
		t.Fatalf("monitored %v", files)
	}
	if bumped, err := r.CheckConfigFiles(); bumped || err != nil {
		t.Fatalf("first check bumped=%v err=%v", bumped, err)
	}
	if bumped, _ := r.CheckConfigFiles(); bumped {
		t.Fatal("bumped without a change")
	}
	writeFile(t, data, `{"v": 2}`)
	writeFile(t, policy, src("two"))
	if bumped, err := r.CheckConfigFiles(); !bumped || err != nil {
		t.Fatalf("change not seen: bumped=%v err=%v", bumped, err)
	}
	if r.Epoch() != 1 {
		t.Fatalf("epoch %d", r.Epoch())
	}
	out = call()
	if out[0] != "two" || out[1] != int64(2) || out[2] != int64(1) {
		t.Fatalf("after bump: %v (want the new policy, the new value for the epochal cache, the old one for the other)", out)
	}
	// a new file matching a glob is a change too
	writeFile(t, filepath.Join(dir, "new.json"), "{}")
	if bumped, _ := r.CheckConfigFiles(); !bumped {
		t.Fatal("new file not seen")
	}
	if err := os.Remove(filepath.Join(dir, "new.json")); err != nil {
		t.Fatal(err)
	}
	if bumped, _ := r.CheckConfigFiles(); !bumped {
		t.Fatal("removed file not seen")
	}
	if _, err := newRuntimeErr(t, `kumo.set_config_monitor_globs { '[' }`); err == nil {
		t.Fatal("bad glob accepted")
	}
	r2 := newRuntime(t, `kumo.on('t', function() kumo.bump_config_epoch() end)`)
	defer r2.Close()
	run(t, r2)
	if r2.Epoch() != 1 {
		t.Fatalf("bump_config_epoch: epoch %d", r2.Epoch())
	}
}
