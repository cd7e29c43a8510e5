package main

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
)

// openFileLimits reads the soft and hard "Max open files" of a process.
func openFileLimits(t *testing.T, pid int) (soft, hard string) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "Max open files") {
			f := strings.Fields(strings.TrimPrefix(line, "Max open files"))
			return f[0], f[1]
		}
	}
	t.Fatalf("no open file limit in\n%s", b)
	return "", ""
}

// TestOpenFileLimit: started with a soft RLIMIT_NOFILE below its hard
// limit, the daemon raises it to the hard limit, and it warns at start
// when the listeners' max_connections plus the spool's and delivery's
// needs exceed that limit (the bundled sink's default max_connections is
// 32,768), and does not when they fit.
func TestOpenFileLimit(t *testing.T) {
	prlimit := []string{"prlimit", "--nofile=512:4096", "--"}
	env, _ := sinkEnv(t)
	d := startDaemonVia(t, prlimit, env, "--policy", "sink.lua")
	if soft, hard := openFileLimits(t, d.cmd.Process.Pid); soft != "4096" || hard != "4096" {
		t.Fatalf("open file limit soft %s hard %s, want the soft limit raised to 4096", soft, hard)
	}
	if !strings.Contains(d.log(), "the open file limit (4096) is below what this configuration may need (34048: the listeners' max_connections 32768") {
		t.Fatalf("no warning about the open file limit:\n%s", d.log())
	}
	d.stop(t, syscall.SIGINT)

	dir := t.TempDir()
	p := spooledPolicy(t, dir, `  kumo.start_esmtp_listener { listen = '127.0.0.1:0', max_connections = 1000 }`, "")
	d2 := startDaemonVia(t, prlimit, nil, "--policy", p)
	if strings.Contains(d2.log(), "open file limit (") {
		t.Fatalf("warned although 1000 connections fit in 4096 files:\n%s", d2.log())
	}
	d2.stop(t, syscall.SIGINT)
}
