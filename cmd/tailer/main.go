// Command tailer follows the zstd log segments that kumogo (like KumoMTA's
// configure_local_logs) writes into a directory, in order, and prints
// their records as JSON lines or as a running summary. A segment is read
// once it is sealed (its write permission removed), so every record is
// printed exactly once; progress is kept in a checkpoint file so that a
// restarted tailer carries on where it stopped. Flags follow KumoMTA's
// tailer: --pattern, --checkpoint, --batch-size, --batch-latency, --tail.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

type options struct {
	dir          string
	pattern      string
	checkpoint   string
	batchSize    int
	batchLatency time.Duration
	tail         bool
	summary      bool
	once         bool
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("tailer", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.pattern, "pattern", "*", "only segment files whose names match this glob")
	fs.StringVar(&o.checkpoint, "checkpoint", "tailer-checkpoint", "name of the checkpoint file (in DIR unless it is a path)")
	fs.IntVar(&o.batchSize, "batch-size", 1000, "records per batch; the checkpoint is saved after each batch")
	fs.DurationVar(&o.batchLatency, "batch-latency", time.Second, "how often to look for newly sealed segments")
	fs.BoolVar(&o.tail, "tail", false, "start with the segments sealed from now on and keep no checkpoint")
	fs.BoolVar(&o.summary, "summary", false, "print a count of records per type after each batch instead of the records")
	fs.BoolVar(&o.once, "once", false, "stop when every sealed segment has been read instead of following the directory")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: tailer [flags] DIR")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	o.dir = fs.Arg(0)
	if o.batchSize <= 0 {
		o.batchSize = 1
	}
	t, err := newTailer(o, stdout)
	if err != nil {
		fmt.Fprintln(stderr, "tailer:", err)
		return 1
	}
	if err := t.follow(ctx); err != nil {
		fmt.Fprintln(stderr, "tailer:", err)
		return 1
	}
	return 0
}

// summaryWriter prints cumulative counts per record type.
type summary struct {
	counts map[string]int
	order  []string
}

func (s *summary) add(line []byte) {
	var r struct {
		Type string `json:"type"`
	}
	if json.Unmarshal(line, &r) != nil {
		r.Type = "unparsable"
	}
	if s.counts == nil {
		s.counts = map[string]int{}
	}
	if _, ok := s.counts[r.Type]; !ok {
		s.order = append(s.order, r.Type)
	}
	s.counts[r.Type]++
}

func (s *summary) print(w *bufio.Writer) {
	total := 0
	for _, t := range s.order {
		total += s.counts[t]
	}
	fmt.Fprintf(w, "%s total=%d", time.Now().UTC().Format(time.RFC3339), total)
	for _, t := range s.order {
		fmt.Fprintf(w, " %s=%d", t, s.counts[t])
	}
	w.WriteByte('\n')
}
