package logrecord

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/klauspost/compress/zstd"
)

// Segment file modes: writable while being written, read-only once sealed.
const (
	openMode   fs.FileMode = 0o644
	sealedMode fs.FileMode = 0o444
	dirMode    fs.FileMode = 0o755
)

// SegmentName returns the file name (before any suffix) of a segment
// started at t: "YYYYMMDD-HHMMSS.ffffffff" in UTC, where ffffffff is the
// fraction of the second truncated to 8 digits (units of 10 ns), zero
// padded. Names sort in time order.
func SegmentName(t time.Time) string {
	t = t.UTC()
	b := make([]byte, 0, 24)
	b = t.AppendFormat(b, "20060102-150405")
	b = append(b, '.')
	frac := strconv.Itoa(t.Nanosecond() / 10)
	for i := len(frac); i < 8; i++ {
		b = append(b, '0')
	}
	b = append(b, frac...)
	return string(b)
}

// encoderLevel maps compression_level to klauspost's levels: 0 is zstd's
// default (3, SpeedDefault); 1..2 SpeedFastest, 3..5 SpeedDefault, 6..9
// SpeedBetterCompression, 10..22 SpeedBestCompression; negative (zstd's
// fast levels) SpeedFastest.
func encoderLevel(level int) zstd.EncoderLevel {
	if level == 0 {
		return zstd.SpeedDefault
	}
	return zstd.EncoderLevelFromZstd(level)
}

// segmentWriter writes one set of segment files: one log directory and
// suffix. It is used by the writer goroutine only.
type segmentWriter struct {
	dir, suffix, header string
	maxSize             int64
	maxAge              time.Duration
	level               zstd.EncoderLevel

	f       *os.File
	enc     *zstd.Encoder // reused across segments and frames
	path    string
	written int64     // uncompressed bytes in the current segment
	opened  time.Time // when the current segment was opened
	dirty   bool      // bytes written since the last frame was closed

	// After a write error (a full disk) no segment is opened before
	// retryAt; records are dropped and counted until then, so that a
	// failing disk gets one new file per backoff period, not one per
	// record.
	retryAt time.Time
	backoff time.Duration
	dropped int64

	// create opens a new segment file; nil means os.OpenFile (tests
	// replace it to make writes fail).
	create func(path string) (*os.File, error)
}

// maxRetryBackoff bounds the wait between attempts to write segments
// again after a write error.
const maxRetryBackoff = 30 * time.Second

// open starts a new segment named after now.
func (w *segmentWriter) open(now time.Time) error {
	if err := os.MkdirAll(w.dir, dirMode); err != nil {
		return fmt.Errorf("logrecord: create log dir: %w", err)
	}
	var f *os.File
	var path string
	for attempt := 0; ; attempt++ {
		path = filepath.Join(w.dir, SegmentName(now)+w.suffix)
		var err error
		if w.create != nil {
			f, err = w.create(path)
		} else {
			f, err = os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, openMode)
		}
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrExist) || attempt >= 100 {
			w.failed(now)
			return fmt.Errorf("logrecord: create segment: %w", err)
		}
		now = now.Add(10 * time.Nanosecond)
	}
	if w.enc == nil {
		enc, err := zstd.NewWriter(f, zstd.WithEncoderLevel(w.level), zstd.WithEncoderConcurrency(1))
		if err != nil {
			f.Close()
			os.Remove(path)
			w.failed(now)
			return fmt.Errorf("logrecord: zstd encoder: %w", err)
		}
		w.enc = enc
	} else {
		w.enc.Reset(f)
	}
	// The new name must survive a crash as its records will: Sync
	// fsyncs the file, not the directory that holds it.
	if err := syncDir(w.dir); err != nil {
		f.Close()
		os.Remove(path)
		w.failed(now)
		return fmt.Errorf("logrecord: sync log dir: %w", err)
	}
	w.f, w.path, w.written, w.opened, w.dirty = f, path, 0, now, false
	if w.header != "" {
		if _, err := w.enc.Write([]byte(w.header)); err != nil {
			w.abort(now)
			return fmt.Errorf("logrecord: write segment header %s: %w", path, err)
		}
		w.written += int64(len(w.header))
		w.dirty = true
	}
	return nil
}

// write appends one line, opening or rotating segments as needed.
func (w *segmentWriter) write(line []byte, now time.Time) error {
	if w.f != nil && w.maxAge > 0 && now.Sub(w.opened) >= w.maxAge {
		if err := w.seal(); err != nil {
			return err
		}
	}
	if w.f == nil {
		if now.Before(w.retryAt) {
			w.dropped++
			return nil // the failure was reported; the count is at recovery
		}
		if err := w.open(now); err != nil {
			return err
		}
	}
	if _, err := w.enc.Write(line); err != nil {
		w.abort(now)
		return fmt.Errorf("logrecord: write segment %s: %w", w.path, err)
	}
	w.written += int64(len(line))
	w.dirty = true
	if w.maxSize > 0 && w.written >= w.maxSize {
		return w.seal()
	}
	return nil
}

// flush ends the current zstd frame so that everything written so far can
// be decoded by readers of the (still writable) file. A new frame starts
// with the next write.
func (w *segmentWriter) flush(now time.Time) error {
	if w.f == nil || !w.dirty {
		return nil
	}
	w.dirty = false
	if err := w.enc.Close(); err != nil {
		w.abort(now)
		return fmt.Errorf("logrecord: flush segment %s: %w", w.path, err)
	}
	w.enc.Reset(w.f)
	return w.recovered()
}

// recovered ends a failure once data has reached the file again. The
// error it returns (to be logged) says how many records were lost.
func (w *segmentWriter) recovered() error {
	if w.backoff == 0 {
		return nil
	}
	w.backoff = 0
	n := w.dropped
	w.dropped = 0
	if n == 0 {
		return nil
	}
	return fmt.Errorf("logrecord: writing to %s again; %d records were dropped while writes failed", w.dir, n)
}

// failed schedules the next attempt after a write error, backing off from
// one second up to maxRetryBackoff.
func (w *segmentWriter) failed(now time.Time) {
	w.backoff = min(max(2*w.backoff, time.Second), maxRetryBackoff)
	w.retryAt = now.Add(w.backoff)
}

// tick seals the segment when it is older than maxAge, otherwise flushes.
func (w *segmentWriter) tick(now time.Time) error {
	if w.f == nil {
		return nil
	}
	if w.maxAge > 0 && now.Sub(w.opened) >= w.maxAge {
		return w.seal()
	}
	return w.flush(now)
}

// seal finishes the zstd stream, closes the file and removes its write
// permission, which tells tailers the segment is complete.
func (w *segmentWriter) seal() error {
	if w.f == nil {
		return nil
	}
	f, path := w.f, w.path
	w.f = nil
	var err error
	if w.dirty {
		if cerr := w.enc.Close(); cerr != nil {
			err = fmt.Errorf("logrecord: finish segment %s: %w", path, cerr)
		}
		w.dirty = false
	}
	w.enc.Reset(nil)
	// fsync before close: a Sync round that took the file before it was
	// sealed finds it closed and counts on this.
	if serr := f.Sync(); serr != nil && err == nil {
		err = fmt.Errorf("logrecord: sync segment %s: %w", path, serr)
	}
	if cerr := f.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("logrecord: close segment %s: %w", path, cerr)
	}
	if cerr := os.Chmod(path, sealedMode); cerr != nil && err == nil {
		err = fmt.Errorf("logrecord: seal segment %s: %w", path, cerr)
	}
	if err != nil {
		w.failed(time.Now())
		return err
	}
	return w.recovered()
}

// abort closes and seals the current segment after a write error (or
// removes it when nothing reached it) and schedules the next attempt; the
// encoder is discarded because its state is unknown.
func (w *segmentWriter) abort(now time.Time) {
	if w.f != nil {
		empty := false
		if st, err := w.f.Stat(); err == nil && st.Size() == 0 {
			empty = true
		}
		w.f.Close()
		if empty {
			os.Remove(w.path)
		} else {
			os.Chmod(w.path, sealedMode)
		}
		w.f = nil
	}
	w.enc = nil
	w.dirty = false
	w.failed(now)
}

// syncDir fsyncs a directory, making the names created in it durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// sealLeftovers removes the write permission of every regular file in dir:
// segments an earlier process left behind are complete as far as tailers
// are concerned. A missing dir is not an error.
func sealLeftovers(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("logrecord: scan log dir: %w", err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		if mode := info.Mode().Perm(); mode&0o222 != 0 {
			p := filepath.Join(dir, e.Name())
			if err := os.Chmod(p, mode&^0o222); err != nil {
				return fmt.Errorf("logrecord: seal leftover segment: %w", err)
			}
		}
	}
	return nil
}
