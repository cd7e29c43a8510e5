package dkim

import (
	"bytes"
	"io"
	"strings"
)

// Canonicalization is a canonicalization algorithm.
type Canonicalization string

const (
	CanonicalizationSimple  Canonicalization = "simple"
	CanonicalizationRelaxed                  = "relaxed"
)

type canonicalizer interface {
	CanonicalizeHeader(s string) string
	CanonicalizeBody(w io.Writer) io.WriteCloser
}

var canonicalizers = map[Canonicalization]canonicalizer{
	CanonicalizationSimple:  new(simpleCanonicalizer),
	CanonicalizationRelaxed: new(relaxedCanonicalizer),
}

// crlfFixer fixes any lone LF without a preceding CR.
type crlfFixer struct {
	cr bool
}

func (cf *crlfFixer) Fix(b []byte) []byte {
	// kumogo: copy the runs between lone LFs instead of appending byte by
	// byte (the output is the same; see canonical_kumogo_test.go).
	res := make([]byte, 0, len(b)+8)
	start := 0
	for i := 0; i < len(b); {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			break
		}
		j += i
		prevCR := cf.cr
		if j > 0 {
			prevCR = b[j-1] == '\r'
		}
		if !prevCR {
			res = append(res, b[start:j]...)
			res = append(res, '\r')
			start = j
		}
		i = j + 1
	}
	res = append(res, b[start:]...)
	if len(b) > 0 {
		cf.cr = b[len(b)-1] == '\r'
	}
	return res
}

type simpleCanonicalizer struct{}

func (c *simpleCanonicalizer) CanonicalizeHeader(s string) string {
	return s
}

type simpleBodyCanonicalizer struct {
	w         io.Writer
	crlfBuf   []byte
	crlfFixer crlfFixer
}

func (c *simpleBodyCanonicalizer) Write(b []byte) (int, error) {
	written := len(b)
	b = append(c.crlfBuf, b...)

	b = c.crlfFixer.Fix(b)

	end := len(b)
	// If it ends with \r, maybe the next write will begin with \n
	if end > 0 && b[end-1] == '\r' {
		end--
	}
	// Keep all \r\n sequences
	for end >= 2 {
		prev := b[end-2]
		cur := b[end-1]
		if prev != '\r' || cur != '\n' {
			break
		}
		end -= 2
	}

	c.crlfBuf = b[end:]

	var err error
	if end > 0 {
		_, err = c.w.Write(b[:end])
	}
	return written, err
}

func (c *simpleBodyCanonicalizer) Close() error {
	// Flush crlfBuf if it ends with a single \r (without a matching \n)
	if len(c.crlfBuf) > 0 && c.crlfBuf[len(c.crlfBuf)-1] == '\r' {
		if _, err := c.w.Write(c.crlfBuf); err != nil {
			return err
		}
	}
	c.crlfBuf = nil

	if _, err := c.w.Write([]byte(crlf)); err != nil {
		return err
	}
	return nil
}

func (c *simpleCanonicalizer) CanonicalizeBody(w io.Writer) io.WriteCloser {
	return &simpleBodyCanonicalizer{w: w}
}

type relaxedCanonicalizer struct{}

func (c *relaxedCanonicalizer) CanonicalizeHeader(s string) string {
	k, v, ok := strings.Cut(s, ":")
	if !ok {
		return strings.TrimSpace(strings.ToLower(s)) + ":" + crlf
	}

	k = strings.TrimSpace(strings.ToLower(k))
	v = strings.Join(strings.FieldsFunc(v, func(r rune) bool {
		return r == ' ' || r == '\t' || r == '\n' || r == '\r'
	}), " ")
	return k + ":" + v + crlf
}

type relaxedBodyCanonicalizer struct {
	w         io.Writer
	crlfBuf   []byte
	wsp       bool
	written   bool
	crlfFixer crlfFixer
	buf       []byte // kumogo: the output buffer, kept across Writes
}

func (c *relaxedBodyCanonicalizer) Write(b []byte) (int, error) {
	written := len(b)

	// kumogo: lines that relaxed canonicalization leaves as they are (no
	// tab, no CR inside, no run of spaces, no trailing space) are copied
	// whole; any other line goes through the byte-by-byte rules below.
	// The output is the same (canonical_kumogo_test.go).
	// Runs of plain lines go to w straight from b; only the other output
	// is gathered in c.buf, which the next Write reuses (io.Writer's
	// contract forbids w to keep it), so that the body is neither copied
	// nor allocated again.
	canonical := c.buf[:0]
	var err error
	write := func(p []byte) {
		if err == nil && len(p) > 0 {
			c.written = true
			_, err = c.w.Write(p)
		}
	}
	// run is a stretch of b made of plain CRLF lines, already canonical
	// but for its last CRLF, which waits in crlfBuf (trailing empty lines
	// are dropped)
	runStart, runEnd := -1, -1
	flushRun := func() {
		if runStart >= 0 {
			write(canonical)
			canonical = canonical[:0]
			write(b[runStart:runEnd])
			runStart = -1
		}
	}
	for pos := 0; pos < len(b); {
		if !c.wsp && !c.crlfFixer.cr {
			if i := bytes.IndexByte(b[pos:], '\n'); i >= 0 {
				i += pos
				line := b[pos:i]
				cr := false
				if n := len(line); n > 0 && line[n-1] == '\r' {
					line, cr = line[:n-1], true
				}
				if plainLine(line) {
					switch {
					case len(line) == 0:
						flushRun()
						c.crlfBuf = append(c.crlfBuf, '\r', '\n')
					case cr && runStart >= 0:
						runEnd = i - 1 // the pending CRLF joins the run
					case cr:
						canonical = append(canonical, c.crlfBuf...)
						c.crlfBuf = append(c.crlfBuf[:0], '\r', '\n')
						runStart, runEnd = pos, i-1
					default: // a lone LF, made CRLF
						flushRun()
						canonical = append(canonical, c.crlfBuf...)
						canonical = append(canonical, line...)
						c.crlfBuf = append(c.crlfBuf[:0], '\r', '\n')
					}
					pos = i + 1
					continue
				}
			}
		}
		flushRun()
		end := len(b)
		if i := bytes.IndexByte(b[pos:], '\n'); i >= 0 {
			end = pos + i + 1
		}
		canonical = c.slow(canonical, c.crlfFixer.Fix(b[pos:end]))
		pos = end
	}
	flushRun()

	write(canonical)
	c.buf = canonical[:0]
	return written, err
}

// plainLine reports whether relaxed canonicalization leaves line (without
// its line break) unchanged. kumogo
func plainLine(line []byte) bool {
	n := len(line)
	if n == 0 {
		return true
	}
	if line[n-1] == ' ' {
		return false
	}
	prevSpace := false
	for _, ch := range line {
		switch ch {
		case '\t', '\r':
			return false
		case ' ':
			if prevSpace {
				return false
			}
			prevSpace = true
			continue
		}
		prevSpace = false
	}
	return true
}

// slow is the upstream byte-by-byte loop, on b already CRLF-fixed. kumogo
func (c *relaxedBodyCanonicalizer) slow(canonical, b []byte) []byte {
	for _, ch := range b {
		if ch == ' ' || ch == '\t' {
			c.wsp = true
		} else if ch == '\r' || ch == '\n' {
			c.wsp = false
			c.crlfBuf = append(c.crlfBuf, ch)
		} else {
			if len(c.crlfBuf) > 0 {
				canonical = append(canonical, c.crlfBuf...)
				c.crlfBuf = c.crlfBuf[:0]
			}
			if c.wsp {
				canonical = append(canonical, ' ')
				c.wsp = false
			}

			canonical = append(canonical, ch)
		}
	}
	return canonical
}

func (c *relaxedBodyCanonicalizer) Close() error {
	if c.written {
		if _, err := c.w.Write([]byte(crlf)); err != nil {
			return err
		}
	}
	return nil
}

func (c *relaxedCanonicalizer) CanonicalizeBody(w io.Writer) io.WriteCloser {
	return &relaxedBodyCanonicalizer{w: w}
}

type limitedWriter struct {
	W io.Writer
	N int64
}

func (w *limitedWriter) Write(b []byte) (int, error) {
	if w.N <= 0 {
		return len(b), nil
	}

	skipped := 0
	if int64(len(b)) > w.N {
		b = b[:w.N]
		skipped = int(int64(len(b)) - w.N)
	}

	n, err := w.W.Write(b)
	w.N -= int64(n)
	return n + skipped, err
}
