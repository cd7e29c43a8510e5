package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"time"

	"github.com/klauspost/compress/zstd"
)

// segmentName matches the names kumogo gives segments (logrecord's
// SegmentName: YYYYMMDD-HHMMSS.ffffffff, optionally with a suffix), so
// the checkpoint file and anything else in the directory are skipped.
var segmentName = regexp.MustCompile(`^\d{8}-\d{6}\.\d{8}`)

// checkpoint is the progress saved between runs: the segment being read
// and how many of its records were printed (Done once all were).
// Segments sorting before it are done.
type checkpoint struct {
	Segment string `json:"segment"`
	Records int    `json:"records"`
	Done    bool   `json:"done"`
}

type tailer struct {
	o    options
	out  *bufio.Writer
	cp   checkpoint
	path string // checkpoint file, "" with --tail
	dec  *zstd.Decoder
	sum  summary
}

func newTailer(o options, w io.Writer) (*tailer, error) {
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
	if err != nil {
		return nil, err
	}
	t := &tailer{o: o, out: bufio.NewWriterSize(w, 64<<10), dec: dec}
	if o.tail {
		// start after everything sealed so far
		segs, err := t.sealed()
		if err != nil {
			return nil, err
		}
		if len(segs) > 0 {
			t.cp = checkpoint{Segment: segs[len(segs)-1], Done: true}
		}
		return t, nil
	}
	t.path = o.checkpoint
	if filepath.Base(t.path) == t.path {
		t.path = filepath.Join(o.dir, t.path)
	}
	b, err := os.ReadFile(t.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("reading the checkpoint: %w", err)
	default:
		if err := json.Unmarshal(b, &t.cp); err != nil {
			return nil, fmt.Errorf("checkpoint %s: %w", t.path, err)
		}
	}
	return t, nil
}

// sealed lists, in order, the segments that match the pattern, stopping
// at the first one still being written: a later segment is never printed
// before an earlier one.
func (t *tailer) sealed() ([]string, error) {
	entries, err := os.ReadDir(t.o.dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil // not created yet: the daemon makes it with its first record
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if !e.Type().IsRegular() || !segmentName.MatchString(e.Name()) {
			continue
		}
		if ok, _ := filepath.Match(t.o.pattern, e.Name()); !ok {
			continue
		}
		names = append(names, e.Name())
	}
	sort.Strings(names)
	for i, n := range names {
		info, err := os.Stat(filepath.Join(t.o.dir, n))
		if err != nil {
			return nil, err
		}
		if info.Mode().Perm()&0o222 != 0 {
			return names[:i], nil
		}
	}
	return names, nil
}

// follow prints every sealed segment from the checkpoint on, then keeps
// looking for new ones every batch-latency until ctx ends.
func (t *tailer) follow(ctx context.Context) error {
	defer t.out.Flush()
	for {
		segs, err := t.sealed()
		if err != nil {
			return err
		}
		for _, name := range segs {
			if name < t.cp.Segment || (name == t.cp.Segment && t.cp.Done) {
				continue
			}
			if name > t.cp.Segment {
				t.cp = checkpoint{Segment: name}
			}
			if err := t.readSegment(name); err != nil {
				return err
			}
			// done with it: the next run starts after it
			t.cp.Done = true
			if err := t.save(); err != nil {
				return err
			}
		}
		if err := t.out.Flush(); err != nil {
			return err
		}
		if t.o.once {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(t.o.batchLatency):
		}
	}
}

// readSegment prints the records of one sealed segment past the
// checkpoint, saving progress after each batch.
func (t *tailer) readSegment(name string) error {
	data, err := os.ReadFile(filepath.Join(t.o.dir, name))
	if err != nil {
		return err
	}
	if err := t.dec.Reset(bytes.NewReader(data)); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	r := bufio.NewReaderSize(t.dec, 64<<10)
	n, batch := 0, 0
	for {
		line, err := r.ReadBytes('\n')
		if len(line) > 0 && line[len(line)-1] == '\n' {
			n++
			if n > t.cp.Records {
				if t.o.summary {
					t.sum.add(line)
				} else if _, werr := t.out.Write(line); werr != nil {
					return werr
				}
				t.cp.Records = n
				if batch++; batch >= t.o.batchSize {
					batch = 0
					if err := t.flushBatch(); err != nil {
						return err
					}
				}
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return t.flushBatch()
}

func (t *tailer) flushBatch() error {
	if t.o.summary {
		t.sum.print(t.out)
	}
	if err := t.out.Flush(); err != nil {
		return err
	}
	return t.save()
}

// save writes the checkpoint atomically (a temporary file renamed over
// it), after the records it covers have been written out.
func (t *tailer) save() error {
	if t.path == "" {
		return nil
	}
	b, _ := json.Marshal(t.cp)
	tmp := t.path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, t.path)
}
