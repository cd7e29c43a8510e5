// Command diskceiling measures how fast this machine's disk can make 100 KB
// records durable, with and without group commit, outside any store: it
// bounds what a spool can reach on the same disk.
//
// Writers append fixed-size records to one file and each waits until its
// record is on stable storage (fdatasync). In "per-message" mode every
// record gets a write and an fdatasync of its own, one at a time; in
// "group" mode one committer writes everything that is waiting as a single
// write and covers it with one fdatasync. Each mode runs on three kinds of
// file: buffered appends to a new file (block allocation and metadata in
// every sync, as a file per message has), buffered writes over a file
// written beforehand (a recycled log, as pebble's WAL is), and O_DIRECT
// writes over such a file (no page-cache copy). It prints msgs/s, MB/s and
// fdatasyncs per record for each, and the group/per-message ratios.
//
//	go run ./bench/diskceiling --dir /tmp --n 20000
//	go run ./bench/diskceiling --modes group-rewrite   # one mode (also per-message-append, ...)
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

const align = 4096

type mode struct {
	group bool
	file  fileKind
}

// fileKind is how the log file is written.
type fileKind int

const (
	// appended: buffered appends to a new file, so every write allocates
	// blocks and every fdatasync commits metadata too.
	appended fileKind = iota
	// rewritten: buffered writes over a file written and synced before the
	// run, as a store that recycles its log files does (pebble's WAL).
	rewritten
	// direct: O_DIRECT writes over a file written before the run.
	direct
)

var kindNames = [...]string{"buffered append", "buffered rewrite", "O_DIRECT rewrite"}

func (m mode) String() string {
	s := "per-message "
	if m.group {
		s = "group "
	}
	return s + kindNames[m.file]
}

type result struct {
	msgsPerSec, mbPerSec, syncsPerMsg float64
}

func main() {
	dir := flag.String("dir", os.TempDir(), "directory on the disk to measure")
	n := flag.Int("n", 20000, "records per mode")
	size := flag.Int("size", 100*1024, "record size in bytes (rounded up to 4 KiB)")
	writers := flag.Int("writers", 256, "concurrent writers")
	rounds := flag.Int("rounds", 1, "runs of every mode; the best of each is kept")
	only := flag.String("modes", "", "comma list of modes to run, named [per-message|group]-[append|rewrite|direct] (default: all six)")
	flag.Parse()
	rec := (*size + align - 1) &^ (align - 1)
	best := map[mode]result{}
	var modes []mode
	for _, k := range []fileKind{appended, rewritten, direct} {
		modes = append(modes, mode{false, k}, mode{true, k})
	}
	if *only != "" {
		var picked []mode
		for _, name := range strings.Split(*only, ",") {
			m, ok := modeNamed(strings.TrimSpace(name))
			if !ok {
				fmt.Fprintf(os.Stderr, "diskceiling: unknown mode %q\n", name)
				os.Exit(2)
			}
			picked = append(picked, m)
		}
		modes = picked
	}
	for r := 0; r < *rounds; r++ {
		for _, m := range modes {
			res, err := run(filepath.Join(*dir, "diskceiling.dat"), m, *n, rec, *writers)
			if err != nil {
				fmt.Fprintln(os.Stderr, "diskceiling:", m, err)
				os.Exit(1)
			}
			if res.msgsPerSec > best[m].msgsPerSec {
				best[m] = res
			}
		}
	}
	fmt.Printf("records=%d size=%d writers=%d rounds=%d dir=%s\n", *n, rec, *writers, *rounds, *dir)
	for _, m := range modes {
		r := best[m]
		fmt.Printf("%-30s %8.0f msgs/s %7.0f MB/s %7.3f fdatasyncs/msg\n", m, r.msgsPerSec, r.mbPerSec, r.syncsPerMsg)
	}
	for _, k := range []fileKind{appended, rewritten, direct} {
		g, p := best[mode{true, k}], best[mode{false, k}]
		if g.msgsPerSec > 0 && p.msgsPerSec > 0 {
			fmt.Printf("ratio group/per-message, %s: %.2fx\n", kindNames[k], g.msgsPerSec/p.msgsPerSec)
		}
	}
}

// modeNamed parses a --modes entry such as "group-rewrite".
func modeNamed(name string) (mode, bool) {
	how, file, ok := "per-message", "", false
	if file, ok = strings.CutPrefix(name, "per-message-"); !ok {
		if file, ok = strings.CutPrefix(name, "group-"); !ok {
			return mode{}, false
		}
		how = "group"
	}
	kinds := map[string]fileKind{"append": appended, "rewrite": rewritten, "direct": direct}
	k, ok := kinds[file]
	return mode{group: how == "group", file: k}, ok
}

// alignedBuf returns a zeroed buffer of size bytes aligned for O_DIRECT.
func alignedBuf(size int) []byte {
	b := make([]byte, size+align)
	off := int(uintptr(unsafe.Pointer(&b[0])) & (align - 1))
	if off != 0 {
		b = b[align-off:]
	}
	b = b[:size]
	for i := range b {
		b[i] = byte('a' + i%26)
	}
	return b
}

func run(path string, m mode, n, rec, writers int) (result, error) {
	_ = os.Remove(path)
	defer os.Remove(path)
	if m.file != appended {
		if err := prewrite(path, int64(rec)*int64(n)); err != nil {
			return result{}, fmt.Errorf("prewrite: %w", err)
		}
	}
	flags := os.O_CREATE | os.O_WRONLY
	if m.file == direct {
		flags |= unix.O_DIRECT
	}
	f, err := os.OpenFile(path, flags, 0o600)
	if err != nil {
		return result{}, err
	}
	defer f.Close()
	fd := int(f.Fd())
	var (
		off   int64
		syncs int
		mu    sync.Mutex
		next  atomic.Int64
		wg    sync.WaitGroup
		errv  atomic.Value
	)
	type req struct{ done chan error }
	reqs := make(chan req, writers)
	committerDone := make(chan struct{})
	if m.group {
		buf := alignedBuf(rec * writers)
		go func() {
			defer close(committerDone)
			for r := range reqs {
				batch := []req{r}
			drain:
				for len(batch) < writers {
					select {
					case r2, ok := <-reqs:
						if !ok {
							break drain
						}
						batch = append(batch, r2)
					default:
						break drain
					}
				}
				_, err := f.WriteAt(buf[:rec*len(batch)], off)
				off += int64(rec * len(batch))
				if err == nil {
					err = unix.Fdatasync(fd)
				}
				syncs++
				for _, b := range batch {
					b.done <- err
				}
			}
		}()
	}
	start := time.Now()
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := alignedBuf(rec)
			done := make(chan error, 1)
			for next.Add(1) <= int64(n) {
				var err error
				if m.group {
					reqs <- req{done}
					err = <-done
				} else {
					mu.Lock()
					_, err = f.WriteAt(body, off)
					off += int64(rec)
					if err == nil {
						err = unix.Fdatasync(fd)
					}
					syncs++
					mu.Unlock()
				}
				if err != nil {
					errv.CompareAndSwap(nil, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(reqs)
	if m.group {
		<-committerDone
	}
	if e, ok := errv.Load().(error); ok {
		return result{}, e
	}
	return result{
		msgsPerSec:  float64(n) / elapsed.Seconds(),
		mbPerSec:    float64(n) * float64(rec) / elapsed.Seconds() / 1e6,
		syncsPerMsg: float64(syncs) / float64(n),
	}, nil
}

// prewrite fills path with size bytes and makes them durable, so that the
// run overwrites allocated, written blocks.
func prewrite(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	chunk := make([]byte, 1<<20)
	for off := int64(0); off < size; off += int64(len(chunk)) {
		b := chunk
		if size-off < int64(len(b)) {
			b = b[:size-off]
		}
		if _, err := f.Write(b); err != nil {
			_ = f.Close()
			return err
		}
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}
