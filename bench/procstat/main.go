// Command procstat reads the CPU time and memory of a process, or of a
// process and all its descendants (--tree), from /proc, for the benchmark
// scripts. It prints one line on stdout:
//
//	cpu_s=S rss_kb=N hwm_kb=N procs=N
//
// cpu_s is utime+stime, and with --tree also cutime+cstime of every process
// in the tree, so children that have exited and been reaped by their parent
// (postfix's master restarts its workers) still count. rss_kb is the sum of
// VmRSS and hwm_kb the sum of VmHWM over the processes alive now.
//
// With --watch INTERVAL it samples until SIGINT or SIGTERM (or until the
// root process is gone) and then prints
//
//	peak_rss_kb=N hwm_sum_kb=N procs_seen=N samples=N
//
// peak_rss_kb being the largest sum of VmRSS seen at one sample and
// hwm_sum_kb the sum, over every process seen in the tree during the watch,
// of the largest VmHWM it showed (for a single process: its VmHWM).
//
//	procstat --pid 1234 [--tree]
//	procstat --pid 1234 --tree --watch 200ms
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clkTck is USER_HZ, 100 on every Linux architecture Go supports.
const clkTck = 100

type proc struct {
	pid, ppid int
	start     string // starttime field: tells a reused pid apart
	ticks     int64  // utime+stime (+cutime+cstime when counted)
	rssKB     int64
	hwmKB     int64
}

// readStat parses /proc/PID/stat. withChildren adds cutime and cstime.
func readStat(pid int, withChildren bool) (proc, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return proc{}, false
	}
	// The command name may hold spaces and parentheses: fields start
	// after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return proc{}, false
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state): field n is f[n-3].
	if len(f) < 20 {
		return proc{}, false
	}
	num := func(n int) int64 { v, _ := strconv.ParseInt(f[n-3], 10, 64); return v }
	p := proc{pid: pid, ppid: int(num(4)), start: f[22-3]}
	p.ticks = num(14) + num(15)
	if withChildren {
		p.ticks += num(16) + num(17)
	}
	return p, true
}

// readMem fills VmRSS and VmHWM from /proc/PID/status.
func readMem(p *proc) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.pid))
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		var dst *int64
		switch k {
		case "VmRSS":
			dst = &p.rssKB
		case "VmHWM":
			dst = &p.hwmKB
		default:
			continue
		}
		fs := strings.Fields(v)
		if len(fs) > 0 {
			*dst, _ = strconv.ParseInt(fs[0], 10, 64)
		}
	}
}

// collect returns the root and, with tree, all its descendants.
func collect(root int, tree bool) []proc {
	rp, ok := readStat(root, tree)
	if !ok {
		return nil
	}
	out := []proc{rp}
	if tree {
		dirs, _ := filepath.Glob("/proc/[0-9]*")
		children := map[int][]proc{}
		for _, d := range dirs {
			pid, err := strconv.Atoi(filepath.Base(d))
			if err != nil || pid == root {
				continue
			}
			if p, ok := readStat(pid, true); ok {
				children[p.ppid] = append(children[p.ppid], p)
			}
		}
		for i := 0; i < len(out); i++ {
			out = append(out, children[out[i].pid]...)
		}
	}
	for i := range out {
		readMem(&out[i])
	}
	return out
}

func main() {
	pid := flag.Int("pid", 0, "process id")
	tree := flag.Bool("tree", false, "include every descendant, and reaped children's CPU time")
	watch := flag.Duration("watch", 0, "sample every INTERVAL until SIGINT/SIGTERM, then print peaks")
	flag.Parse()
	if *pid <= 0 {
		fmt.Fprintln(os.Stderr, "procstat: --pid is required")
		os.Exit(2)
	}
	if *watch <= 0 {
		ps := collect(*pid, *tree)
		if len(ps) == 0 {
			fmt.Fprintf(os.Stderr, "procstat: no process %d\n", *pid)
			os.Exit(1)
		}
		var ticks, rss, hwm int64
		for _, p := range ps {
			ticks += p.ticks
			rss += p.rssKB
			hwm += p.hwmKB
		}
		fmt.Printf("cpu_s=%.2f rss_kb=%d hwm_kb=%d procs=%d\n", float64(ticks)/clkTck, rss, hwm, len(ps))
		return
	}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	tick := time.NewTicker(*watch)
	defer tick.Stop()
	hwm := map[string]int64{} // pid/starttime → largest VmHWM seen
	var peak int64
	samples := 0
	sample := func() bool {
		ps := collect(*pid, *tree)
		if len(ps) == 0 {
			return false
		}
		samples++
		var rss int64
		for _, p := range ps {
			rss += p.rssKB
			k := strconv.Itoa(p.pid) + "/" + p.start
			if p.hwmKB > hwm[k] {
				hwm[k] = p.hwmKB
			}
		}
		peak = max(peak, rss)
		return true
	}
loop:
	for sample() {
		select {
		case <-sigs:
			sample()
			break loop
		case <-tick.C:
		}
	}
	var sum int64
	for _, v := range hwm {
		sum += v
	}
	fmt.Printf("peak_rss_kb=%d hwm_sum_kb=%d procs_seen=%d samples=%d\n", peak, sum, len(hwm), samples)
}
