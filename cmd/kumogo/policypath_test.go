package main

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestPolicyPathSelection: only a bare bundled name selects a bundled
// policy. A path to a missing file, even one ending in a bundled name,
// fails with "no such file" instead of starting the bundled sink (an open
// relay that discards everything), and the log says which policy runs.
func TestPolicyPathSelection(t *testing.T) {
	for _, name := range []string{"/etc/kumo/sink.lua", "./sink.lua", "policies/sink.lua", "sink", "route-to-sink", "nosuch.lua"} {
		// bounded: the defect started the bundled sink, which never exits
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, kumogoBin, "--policy", name)
		cmd.Dir = t.TempDir() // no policy files there
		cmd.Env = append(cmd.Environ(), "KUMOGO_SINK_LISTEN=127.0.0.1:0", "KUMOGO_SINK_DIR="+t.TempDir())
		out, err := cmd.CombinedOutput()
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 1 {
			t.Fatalf("--policy %s: exit %v, want 1\n%s", name, err, out)
		}
		if !strings.Contains(string(out), "policy "+name+": no such file") || strings.Contains(string(out), "listener on") {
			t.Fatalf("--policy %s:\n%s", name, out)
		}
	}
	env, _ := sinkEnv(t)
	d := startDaemon(t, env, "--policy", "sink.lua")
	if !strings.Contains(d.log(), "policy: bundled sink.lua") {
		t.Fatalf("the log does not say the bundled sink.lua runs:\n%s", d.log())
	}
	d.stop(t, syscall.SIGINT)

	dir := t.TempDir()
	p := spooledPolicy(t, dir, `  kumo.start_esmtp_listener { listen = '127.0.0.1:0' }`, "")
	d2 := startDaemon(t, nil, "--policy", p)
	if !strings.Contains(d2.log(), "policy: "+filepath.Clean(p)) {
		t.Fatalf("the log does not name the policy file %s:\n%s", p, d2.log())
	}
	d2.stop(t, syscall.SIGINT)
}
