package logrecord

import (
	"bufio"
	"bytes"
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
// Lines that are not JSON objects (segment headers) are skipped. For a
// segment that is still writable, data after the last complete frame and a
// trailing partial line are ignored; a sealed segment that does not decode
// is an error.
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
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
	if err != nil {
		return fmt.Errorf("logrecord: zstd decoder: %w", err)
	}
	defer dec.Close()
	for _, name := range names {
		if err := readSegment(dec, filepath.Join(dir, name), fn); err != nil {
			return err
		}
	}
	return nil
}

func readSegment(dec *zstd.Decoder, path string, fn func(path string, line []byte) error) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("logrecord: open segment: %w", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return fmt.Errorf("logrecord: stat segment: %w", err)
	}
	sealed := info.Mode().Perm()&0o222 == 0
	// Read the file content once so a concurrently growing file yields a
	// consistent prefix.
	data, err := io.ReadAll(f)
	if err != nil {
		return fmt.Errorf("logrecord: read segment: %w", err)
	}
	if err := dec.Reset(bytes.NewReader(data)); err != nil {
		return fmt.Errorf("logrecord: %s: %w", path, err)
	}
	r := bufio.NewReaderSize(dec, 64<<10)
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			if errors.Is(err, io.EOF) {
				if len(line) > 0 && sealed {
					return handleLine(path, line, fn)
				}
				return nil
			}
			if sealed {
				return fmt.Errorf("logrecord: decode %s: %w", path, err)
			}
			// a segment being written ends in an unfinished frame
			return nil
		}
		if err := handleLine(path, line, fn); err != nil {
			return err
		}
	}
}

func handleLine(path string, line []byte, fn func(path string, line []byte) error) error {
	line = bytes.TrimSpace(line)
	if len(line) == 0 || line[0] != '{' {
		return nil
	}
	return fn(path, line)
}
