package memguard

import (
	"os"
	"path/filepath"
	"testing"
)

// fakeTree writes files (path relative to the fake root → content).
func fakeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for p, content := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

const meminfo = "MemTotal:       16000000 kB\nMemFree:         1000 kB"

func TestAvailableCgroupV2(t *testing.T) {
	root := fakeTree(t, map[string]string{
		"/proc/self/cgroup": "0::/system.slice/kumod.service",
		"/proc/meminfo":     meminfo,
		"/sys/fs/cgroup/system.slice/kumod.service/memory.max":     "max",
		"/sys/fs/cgroup/system.slice/memory.max":                   "4294967296",
		"/sys/fs/cgroup/memory.max":                                "8589934592",
		"/sys/fs/cgroup/system.slice/kumod.service/memory.current": "1000000000",
		"/sys/fs/cgroup/system.slice/kumod.service/memory.stat":    "anon 600000000\ninactive_file 300000000\nactive_file 100000000",
	})
	g := New(Options{Root: root})
	if n, src := g.Available(); n != 4294967296 || src != SourceCgroupV2 {
		t.Fatalf("available = %d from %s, want 4 GiB from the parent's memory.max", n, src)
	}
	if g.Limit() != 4294967296/100*75 {
		t.Fatalf("limit = %d, want 75%%", g.Limit())
	}
	if _, err := g.Sample(); err != nil {
		t.Fatal(err)
	}
	if g.Usage() != 700000000 {
		t.Fatalf("usage = %d, want memory.current less inactive_file", g.Usage())
	}
}

func TestAvailableCgroupV1(t *testing.T) {
	root := fakeTree(t, map[string]string{
		"/proc/self/cgroup": "5:cpu:/\n4:memory:/docker/abc\n0::/",
		"/proc/meminfo":     meminfo,
		"/sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes": "2147483648",
		"/sys/fs/cgroup/memory/memory.limit_in_bytes":            "9223372036854771712",
		"/sys/fs/cgroup/memory/docker/abc/memory.usage_in_bytes": "500000000",
		"/sys/fs/cgroup/memory/docker/abc/memory.stat":           "rss 1\ntotal_inactive_file 100000000",
	})
	g := New(Options{Root: root})
	if n, src := g.Available(); n != 2147483648 || src != SourceCgroupV1 {
		t.Fatalf("available = %d from %s", n, src)
	}
	g.Sample()
	if g.Usage() != 400000000 {
		t.Fatalf("usage = %d", g.Usage())
	}
}

func TestAvailablePhysical(t *testing.T) {
	if _, _, ok := rlimit(); ok {
		t.Skip("this process has RLIMIT_AS or RLIMIT_DATA set, which comes before physical memory")
	}
	root := fakeTree(t, map[string]string{
		"/proc/self/cgroup": "4:memory:/\n0::/",
		"/proc/meminfo":     meminfo,
		"/sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712",
		"/proc/self/statm":                            "1000 250 10 1 0 100 0",
	})
	g := New(Options{Root: root})
	if n, src := g.Available(); n != 16000000<<10 || src != SourcePhysical {
		t.Fatalf("available = %d from %s", n, src)
	}
	g.Sample()
	if g.Usage() != 250*int64(os.Getpagesize()) {
		t.Fatalf("usage = %d, want the RSS of statm", g.Usage())
	}
}

// TestRealSystem reads this machine's figures: whatever the source, the
// available memory and the RSS are positive.
func TestRealSystem(t *testing.T) {
	g := New(Options{})
	n, src := g.Available()
	if n <= 0 || src == "" {
		t.Fatalf("available = %d from %q", n, src)
	}
	if _, err := g.Sample(); err != nil || g.Usage() <= 0 {
		t.Fatalf("usage = %d, err = %v", g.Usage(), err)
	}
	t.Logf("available %d bytes (%s), limit %d, usage %d", n, src, g.Limit(), g.Usage())
}

func TestOverLimit(t *testing.T) {
	usage := int64(0)
	g := New(Options{Limit: 1000, Usage: func() (int64, error) { return usage, nil }})
	released := 0
	g.OnOverLimit(func() { released++ })
	step := func(u int64, wantOver bool, wantCount uint64) {
		t.Helper()
		usage = u
		g.Sample()
		ok, reason := g.Health()
		if g.OverLimit() != wantOver || ok == wantOver || g.OverLimitCount() != wantCount {
			t.Fatalf("usage %d: over=%v health=%v,%q count=%d", u, g.OverLimit(), ok, reason, g.OverLimitCount())
		}
		if wantOver && reason != "load shedding" {
			t.Fatalf("reason = %q", reason)
		}
	}
	step(500, false, 0)
	step(1000, true, 1)
	step(5000, true, 1) // still over: not a new crossing
	step(999, false, 1)
	step(1200, true, 2)
	if released != 2 {
		t.Fatalf("caches released %d times, want once per crossing", released)
	}
	if g.Limit() != 1000 {
		t.Fatal(g.Limit())
	}
	g.SetLimit(2000)
	step(1500, false, 2)
}
