package logrecord

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"github.com/klauspost/compress/zstd"
)

// ReadDir decodes every segment in dir, complete or still being written, in
// file name order and returns the records in the order they were written.
// Lines that are not JSON objects (segment headers) are skipped. Each
// segment is read as SegmentReader reads it: a segment still being written
// up to its last complete frame, a sealed one (or one left by a crash and
// sealed at the next start) up to its last whole record. A segment with
// data that is not zstd at all is an error when sealed.
func ReadDir(dir string) ([]Record, error) {
	var out []Record
	err := readDirLines(dir, func(path string, line []byte) error {
		var r Record
		if err := json.Unmarshal(line, &r); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		out = append(out, r)
		return nil
	})
	return out, err
}

// ReadDirRaw is ReadDir returning each record as a generic JSON object, to
// check exact field names and shapes.
func ReadDirRaw(dir string) ([]map[string]any, error) {
	var out []map[string]any
	err := readDirLines(dir, func(path string, line []byte) error {
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			return fmt.Errorf("logrecord: %s: %w", path, err)
		}
		out = append(out, m)
		return nil
	})
	return out, err
}

func readDirLines(dir string, fn func(path string, line []byte) error) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("logrecord: read log dir: %w", err)
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		if e.Type().IsRegular() {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	for _, name := range names {
		if err := readSegment(filepath.Join(dir, name), fn); err != nil {
			return err
		}
	}
	return nil
}

func readSegment(path string, fn func(path string, line []byte) error) error {
	r, err := OpenSegment(path)
	if err != nil {
		return err
	}
	defer r.Close()
	for {
		line, err := r.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := fn(path, line); err != nil {
			return err
		}
	}
}

// ErrCorrupt is returned for a sealed segment holding data that is not a
// zstd frame where one should start.
var ErrCorrupt = errors.New("logrecord: corrupt segment")

// SegmentReader reads the records of one segment file, the way a tailer
// follows a log directory: Next returns whole records only, one at a time.
//
// The writer ends a zstd frame at every flush and every Sync, so a frame
// that is complete in the file holds whole records, and one that is not is
// either still being written (the writer will complete it) or was cut by a
// crash. Next therefore decodes complete frames only, while the segment is
// writable: at the end of them it returns io.EOF, and a later Next picks up
// what was appended meanwhile (a tailer polls, or waits for the file to
// change). Once the segment is sealed (read-only: the writer closed it, or
// the daemon sealed the leftovers of a crashed run at its next start), a
// final incomplete frame is decoded as far as it goes and the records it
// holds whole are returned too: a truncated segment is read up to its last
// whole record.
type SegmentReader struct {
	path    string
	f       *os.File
	dec     *zstd.Decoder
	off     int64  // file offset of pending[0]
	pending []byte // bytes read from the file, from the first frame not yet decoded
	out     []byte // decoded bytes of the current frame
	pos     int    // next unread byte of out
	carry   []byte // a line begun in an earlier frame
	done    bool   // a sealed segment has been read to its end
}

// OpenSegment opens a segment file for reading.
func OpenSegment(path string) (*SegmentReader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("logrecord: open segment: %w", err)
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("logrecord: zstd decoder: %w", err)
	}
	return &SegmentReader{path: path, f: f, dec: dec}, nil
}

// Path is the segment's file name.
func (r *SegmentReader) Path() string { return r.path }

// Offset is the file offset up to which the segment has been decoded: the
// end of the last frame Next took records from.
func (r *SegmentReader) Offset() int64 { return r.off }

// Close releases the file and the decoder.
func (r *SegmentReader) Close() error {
	r.dec.Close()
	return r.f.Close()
}

// Next returns the next record (a JSON object, without its newline; valid
// until the next call). It returns io.EOF when no whole record follows yet
// in a writable segment, or none at all in a sealed one.
func (r *SegmentReader) Next() ([]byte, error) {
	for {
		if line, ok := r.line(); ok {
			if line = bytes.TrimSpace(line); len(line) > 0 && line[0] == '{' {
				return line, nil
			}
			continue // a segment header, or a blank line
		}
		if r.done {
			return nil, io.EOF
		}
		if err := r.decodeFrame(); err != nil {
			return nil, err
		}
	}
}

// line takes the next complete line from the decoded frame.
func (r *SegmentReader) line() ([]byte, bool) {
	rest := r.out[r.pos:]
	i := bytes.IndexByte(rest, '\n')
	if i < 0 {
		if len(rest) > 0 {
			r.carry = append(r.carry, rest...)
			r.pos = len(r.out)
		}
		return nil, false
	}
	r.pos += i + 1
	if len(r.carry) > 0 {
		r.carry = append(r.carry, rest[:i]...)
		line := r.carry
		r.carry = r.carry[:0:0]
		return line, true
	}
	return rest[:i], true
}

// decodeFrame reads what was appended to the file and decodes the next
// complete frame into out, or for a sealed segment the incomplete rest. It
// returns io.EOF when there is nothing (more) to decode yet.
func (r *SegmentReader) decodeFrame() error {
	if err := r.fill(); err != nil {
		return err
	}
	n, err := frameLen(r.pending)
	switch {
	case err == nil && n > 0:
		out, derr := r.dec.DecodeAll(r.pending[:n], r.out[:0])
		if derr != nil {
			return fmt.Errorf("%w: %s at offset %d: %v", ErrCorrupt, r.path, r.off, derr)
		}
		r.out, r.pos = out, 0
		r.pending = r.pending[n:]
		r.off += int64(n)
		return nil
	case err == nil:
		// an incomplete frame (or nothing at all)
		sealed, serr := r.sealed()
		if serr != nil {
			return serr
		}
		if !sealed {
			return io.EOF
		}
		r.salvage()
		return nil
	default:
		sealed, serr := r.sealed()
		if serr != nil {
			return serr
		}
		if !sealed {
			return io.EOF // a writer in an unknown state: nothing whole here
		}
		if allZero(r.pending) {
			// a crash can leave a zero-filled tail: the end of the data
			r.done = true
			return io.EOF
		}
		r.done = true
		return fmt.Errorf("%w: %s at offset %d: %v", ErrCorrupt, r.path, r.off, err)
	}
}

// fill appends what the file holds beyond pending.
func (r *SegmentReader) fill() error {
	at := r.off + int64(len(r.pending))
	for {
		if cap(r.pending)-len(r.pending) < 32<<10 {
			grown := make([]byte, len(r.pending), 2*cap(r.pending)+64<<10)
			copy(grown, r.pending)
			r.pending = grown
		}
		n, err := r.f.ReadAt(r.pending[len(r.pending):cap(r.pending)], at)
		r.pending = r.pending[:len(r.pending)+n]
		at += int64(n)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("logrecord: read segment: %w", err)
		}
	}
}

func (r *SegmentReader) sealed() (bool, error) {
	info, err := r.f.Stat()
	if err != nil {
		return false, fmt.Errorf("logrecord: stat segment: %w", err)
	}
	return info.Mode().Perm()&0o222 == 0, nil
}

// salvage decodes the incomplete last frame of a sealed segment as far as
// its data goes; the lines it completes are returned by Next, a line cut
// short is dropped.
func (r *SegmentReader) salvage() {
	r.done = true
	r.out, r.pos = r.out[:0], 0
	if len(r.pending) == 0 {
		return
	}
	if err := r.dec.Reset(bytes.NewReader(r.pending)); err != nil {
		return
	}
	buf := make([]byte, 32<<10)
	for {
		n, err := r.dec.Read(buf)
		r.out = append(r.out, buf[:n]...)
		if err != nil {
			break
		}
	}
	r.off += int64(len(r.pending))
	r.pending = r.pending[:0]
	// only whole lines count; the carry of an earlier frame ends here too
	if i := bytes.LastIndexByte(r.out, '\n'); i >= 0 {
		r.out = r.out[:i+1]
	} else {
		r.out = r.out[:0]
		r.carry = r.carry[:0]
	}
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// zstd frame magic numbers (RFC 8878, section 3.1).
const (
	frameMagic        = 0xFD2FB528
	skippableMagicMin = 0x184D2A50
	skippableMagicMax = 0x184D2A5F
)

// frameLen returns the length of the zstd frame at the start of b, or 0
// when b holds only part of one (or nothing). An error means b does not
// start with a frame. Blocks are walked by their headers (RFC 8878,
// section 3.1.1.2); the content is not decoded.
func frameLen(b []byte) (int, error) {
	if len(b) < 4 {
		return 0, nil
	}
	magic := binary.LittleEndian.Uint32(b)
	if magic >= skippableMagicMin && magic <= skippableMagicMax {
		if len(b) < 8 {
			return 0, nil
		}
		n := 8 + int(binary.LittleEndian.Uint32(b[4:]))
		if n > len(b) {
			return 0, nil
		}
		return n, nil
	}
	if magic != frameMagic {
		return 0, errors.New("no zstd frame magic")
	}
	var h zstd.Header
	if err := h.Decode(b); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return 0, nil
		}
		return 0, err
	}
	i := h.HeaderSize
	for {
		if i+3 > len(b) {
			return 0, nil
		}
		bh := uint32(b[i]) | uint32(b[i+1])<<8 | uint32(b[i+2])<<16
		last := bh&1 == 1
		size := int(bh >> 3)
		switch (bh >> 1) & 3 {
		case 0, 2: // raw, compressed
		case 1: // RLE: one byte repeated size times
			size = 1
		default:
			return 0, errors.New("reserved zstd block type")
		}
		i += 3 + size
		if i > len(b) {
			return 0, nil
		}
		if last {
			break
		}
	}
	if h.HasCheckSum {
		i += 4
		if i > len(b) {
			return 0, nil
		}
	}
	return i, nil
}
