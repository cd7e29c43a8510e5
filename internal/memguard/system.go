package memguard

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"path"
	"strconv"
	"strings"
)

// system reads memory figures from /proc and /sys under root.
type system struct{ root string }

// cgroupUnlimited is the smallest value treated as "no limit" (cgroup v1
// reports about 2^63 rounded down to a page when unlimited).
const cgroupUnlimited = 1 << 62

func (s system) read(p string) (string, error) {
	b, err := os.ReadFile(s.root + p)
	return string(bytes.TrimSpace(b)), err
}

func (s system) readInt(p string) (int64, error) {
	v, err := s.read(p)
	if err != nil {
		return 0, err
	}
	if v == "max" {
		return 0, errNoLimit
	}
	return strconv.ParseInt(v, 10, 64)
}

var errNoLimit = errors.New("no limit")

// cgroupDirs returns the candidate directories of this process's cgroup
// for v2 ("" controller) or v1's memory controller: its own directory
// under the mount, then its ancestors up to the mount itself (a limit set
// on a parent applies too; inside a cgroup namespace the path is "/").
func (s system) cgroupDirs(v2 bool) []string {
	data, err := s.read("/proc/self/cgroup")
	if err != nil {
		return nil
	}
	var rel string
	found := false
	for _, line := range strings.Split(data, "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if v2 && parts[0] == "0" && parts[1] == "" {
			rel, found = parts[2], true
		}
		if !v2 && strings.Contains(","+parts[1]+",", ",memory,") {
			rel, found = parts[2], true
		}
	}
	if !found {
		return nil
	}
	mounts := []string{"/sys/fs/cgroup/memory"}
	if v2 {
		mounts = []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"}
	}
	var dirs []string
	for _, m := range mounts {
		for p := path.Clean("/" + rel); ; p = path.Dir(p) {
			dirs = append(dirs, path.Join(m, p))
			if p == "/" {
				break
			}
		}
	}
	return dirs
}

// cgroupLimit returns the smallest memory limit along this process's
// cgroup path.
func (s system) cgroupLimit(v2 bool) (int64, bool) {
	file := "memory.limit_in_bytes"
	if v2 {
		file = "memory.max"
	}
	best := int64(0)
	for _, d := range s.cgroupDirs(v2) {
		n, err := s.readInt(path.Join(d, file))
		if err != nil || n <= 0 || n >= cgroupUnlimited {
			continue
		}
		if best == 0 || n < best {
			best = n
		}
	}
	return best, best > 0
}

// available detects the memory available to the process, in KumoMTA's
// order: cgroup v2, cgroup v1, RLIMIT_AS, RLIMIT_DATA, physical memory.
func (s system) available() (int64, Source) {
	if n, ok := s.cgroupLimit(true); ok {
		return n, SourceCgroupV2
	}
	if n, ok := s.cgroupLimit(false); ok {
		return n, SourceCgroupV1
	}
	if n, src, ok := rlimit(); ok {
		return n, src
	}
	return s.physical(), SourcePhysical
}

// physical returns MemTotal from /proc/meminfo.
func (s system) physical() int64 {
	data, err := s.read("/proc/meminfo")
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(strings.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == "MemTotal:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// usage is the cgroup's usage less its inactive page cache (the kernel
// reclaims that before it kills anything) when the limit came from a
// cgroup, else the resident set size from /proc/self/statm.
func (s system) usage(src Source) (int64, error) {
	switch src {
	case SourceCgroupV2:
		if n, ok := s.cgroupUsage(true); ok {
			return n, nil
		}
	case SourceCgroupV1:
		if n, ok := s.cgroupUsage(false); ok {
			return n, nil
		}
	}
	return s.rss()
}

func (s system) cgroupUsage(v2 bool) (int64, bool) {
	usageFile, statKey := "memory.usage_in_bytes", "total_inactive_file"
	if v2 {
		usageFile, statKey = "memory.current", "inactive_file"
	}
	for _, d := range s.cgroupDirs(v2) {
		n, err := s.readInt(path.Join(d, usageFile))
		if err != nil {
			continue
		}
		if stat, err := s.read(path.Join(d, "memory.stat")); err == nil {
			for _, line := range strings.Split(stat, "\n") {
				f := strings.Fields(line)
				if len(f) == 2 && f[0] == statKey {
					if v, err := strconv.ParseInt(f[1], 10, 64); err == nil && v < n {
						n -= v
					}
				}
			}
		}
		return n, true
	}
	return 0, false
}

// rss reads the resident set size from /proc/self/statm.
func (s system) rss() (int64, error) {
	data, err := s.read("/proc/self/statm")
	if err != nil {
		return 0, err
	}
	f := strings.Fields(data)
	if len(f) < 2 {
		return 0, errors.New("memguard: short /proc/self/statm")
	}
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return 0, err
	}
	return pages * int64(os.Getpagesize()), nil
}
