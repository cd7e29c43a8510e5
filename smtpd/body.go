package smtpd

import (
	"bytes"
	"errors"
	"io"
	"net"
	"time"
)

// The DATA body has exactly one scanner: bodyScan, run by the front end on
// the socket's buffered reader. It decides where the body ends, removes the
// stuffing dots and notes over-long lines and bare line endings. go-smtp's
// own DATA reader never sees the body: the session reads it through
// dataBody, and once the end is found go-smtp's reader is handed the bare
// end-of-data line (".\r\n", see frontConn.Read), so that the two can
// never disagree about where a body ends whatever bare CRs and LFs the
// client sends (SMTP smuggling).
//
// The end of a body is the line "." that follows a CRLF, that is the byte
// sequence CRLF "." CRLF with the CRLF before the dot counted from the start
// of the body. This is the sequence KumoMTA looks for (and RFC 5321 names);
// a line ending in a bare LF or bare CR never starts a line for this
// purpose, so "\n.\n", "\r.\r", "\n.\r\n" or "\r\n.\n" do not end a body,
// while "x\r\r\n.\r\n" does (its last line ends with CRLF) and then fails the
// line-ending check of invalid_line_endings unless that is Allow or Fix.

// bodyScan is the state of the DATA framing between reads.
type bodyScan struct {
	limit   int  // line_length_hard_limit (0: none)
	lineLen int  // raw bytes of the current line seen so far
	startOK bool // the current line started after CRLF (or opens the body)
	first   byte // the current line's first byte
	prevCR  bool // the last byte seen was a CR
	// held: the current line is ".\r" so far; its CR is kept back until
	// the next byte tells whether the line is the end-of-data line
	held      bool
	tooLong   bool
	badEnding bool
}

func (b *bodyScan) reset(limit int) {
	*b = bodyScan{limit: limit, startOK: true}
}

// scan copies body bytes from src to dst, leaving out the stuffing dot at
// the start of every line that starts after a CRLF and the end-of-data
// line. It returns the bytes written and read (no more than dst holds), and
// whether the end of the body was read.
func (b *bodyScan) scan(dst, src []byte) (nw, nr int, end bool) {
	if b.held && len(src) > 0 {
		if src[0] == '\n' {
			b.held, b.lineLen, b.prevCR = false, 0, false
			return 0, 1, true
		}
		if len(dst) == 0 {
			return 0, 0, false
		}
		b.held = false
		dst[0] = '\r' // the line was not the end after all
		nw = 1
	}
	if len(src) > len(dst)-nw {
		src = src[:len(dst)-nw]
	}
	for nr < len(src) {
		seg := src[nr:]
		j := bytes.IndexByte(seg, '\n')
		if j >= 0 {
			seg = seg[:j+1]
		}
		out := seg
		if b.lineLen == 0 {
			b.first = seg[0]
			if b.first == '.' && b.startOK {
				out = seg[1:] // a stuffing dot, or the end-of-data line
			}
		}
		if b.prevCR && seg[0] != '\n' {
			b.badEnding = true // the CR that ended the last read was bare
		}
		if j < 0 {
			// the line goes on in the next read
			if k := bytes.IndexByte(seg, '\r'); k >= 0 && k < len(seg)-1 {
				b.badEnding = true
			}
			b.prevCR = seg[len(seg)-1] == '\r'
			b.lineLen += len(seg)
			if b.first == '.' && b.startOK && b.lineLen == 2 && b.prevCR {
				out = out[:len(out)-1] // ".\r": wait for the next byte
				b.held = true
			}
			nw += copy(dst[nw:], out)
			nr += len(seg)
			return nw, nr, false
		}
		total := b.lineLen + len(seg)
		crlf := len(seg) >= 2 && seg[len(seg)-2] == '\r' || len(seg) == 1 && b.prevCR
		content := total - 1 // without the line ending
		inner := seg[:len(seg)-1]
		if crlf {
			content--
			if len(inner) > 0 {
				inner = inner[:len(inner)-1]
			}
		} else {
			b.badEnding = true
		}
		if bytes.IndexByte(inner, '\r') >= 0 {
			b.badEnding = true
		}
		if b.limit > 0 && content > b.limit {
			b.tooLong = true
		}
		nr += len(seg)
		if b.startOK && crlf && total == 3 && b.first == '.' {
			b.lineLen, b.prevCR = 0, false
			return nw, nr, true
		}
		nw += copy(dst[nw:], out)
		b.startOK = crlf
		b.lineLen, b.prevCR = 0, false
	}
	return nw, nr, false
}

// endOfData is what go-smtp's DATA reader is handed once the front end has
// read a body: the end-of-data line alone.
var endOfData = []byte(".\r\n")

// minBodyRate is the slowest average rate, in bytes per second, at which a
// client may send a body (DATA, or one BDAT chunk) once client_timeout has
// passed: a body must be complete by client_timeout plus one second per
// minBodyRate bytes received. client_timeout alone bounds each read, so a
// client sending one byte at a time could otherwise hold a session for
// ever.
const minBodyRate = 1024

// startBody starts the clock of a body transfer.
func (f *frontConn) startBody() {
	f.bodyStart, f.bodyBytes = time.Now(), 0
}

// bodyReadDeadline sets the read deadline for the next read of a body:
// client_timeout from now, but never past the body's own deadline.
func (f *frontConn) bodyReadDeadline() {
	now := time.Now()
	d := now.Add(f.cfg.ClientTimeout)
	limit := f.bodyStart.Add(f.cfg.ClientTimeout + time.Duration(f.bodyBytes)*time.Second/minBodyRate)
	if limit.Before(d) {
		d = limit
	}
	f.raw.SetReadDeadline(d)
}

// bodyReadFailed answers a body read that failed: a timeout (a stall, or a
// transfer slower than minBodyRate) gets KumoMTA's idle reply; either way
// the session ends. No error text reaches the client.
func (f *frontConn) bodyReadFailed(err error) {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		if time.Since(f.bodyStart) >= f.cfg.ClientTimeout {
			f.s.log.Info().Str("peer", f.peer.String()).Int64("bytes", f.bodyBytes).Dur("elapsed", time.Since(f.bodyStart)).Msg("body transfer stalled or too slow; ending session")
		}
		f.reply(421, textIdleTooLong(f.host()))
		f.flush()
	}
	f.closing = true
	f.ended = true // go-smtp's answer to the failed read is never sent
}

// errBodyRead ends a Data whose body could not be read; the front end has
// answered already (bodyReadFailed), so its reply is never sent.
var errBodyRead = errors.New("smtpd: reading the message body failed")

// dataBody reads a DATA body through the front end's scanner; it returns
// io.EOF once the end-of-data line has been read.
type dataBody struct{ f *frontConn }

func (d dataBody) Read(p []byte) (int, error) {
	f := d.f
	if f.mode != modeData {
		return 0, io.EOF
	}
	for {
		if f.rd.Buffered() == 0 {
			f.flush()
			f.bodyReadDeadline()
			if _, err := f.rd.Peek(1); err != nil {
				f.bodyReadFailed(err)
				return 0, errBodyRead
			}
		}
		n := f.rd.Buffered()
		if n > len(p) {
			n = len(p)
		}
		chunk, _ := f.rd.Peek(n)
		nw, nr, end := f.scan.scan(p, chunk)
		f.rd.Discard(nr)
		f.bodyBytes += int64(nr)
		if end {
			f.mode = modeDataEnd
			if nw == 0 {
				return 0, io.EOF
			}
			return nw, nil
		}
		if nw > 0 {
			return nw, nil
		}
		// only a stuffing dot was read: read on
	}
}

// readBDAT hands go-smtp the bytes of the current BDAT chunk.
func (f *frontConn) readBDAT(p []byte) (int, error) {
	if f.rd.Buffered() == 0 {
		f.flush()
	}
	if int64(len(p)) > f.bdatLeft {
		p = p[:f.bdatLeft]
	}
	f.bodyReadDeadline()
	n, err := f.rd.Read(p)
	f.bdatLeft -= int64(n)
	f.bodyBytes += int64(n)
	if f.bdatLeft == 0 {
		f.mode = modeCmd
	}
	if err != nil {
		f.bodyReadFailed(err)
		return n, errBodyRead
	}
	return n, nil
}

// checkLines applies DATA's line checks to a body received with BDAT: it
// reports a line longer than limit (0: none) and a bare CR or bare LF. A
// last line without a line ending is not a bare one.
func checkLines(b []byte, limit int) (tooLong, badEnding bool) {
	for len(b) > 0 {
		line := b
		i := bytes.IndexByte(b, '\n')
		if i >= 0 {
			line, b = b[:i], b[i+1:]
			if len(line) == 0 || line[len(line)-1] != '\r' {
				badEnding = true
			} else {
				line = line[:len(line)-1]
			}
		} else {
			b = nil
		}
		if bytes.IndexByte(line, '\r') >= 0 {
			badEnding = true
		}
		if limit > 0 && len(line) > limit {
			tooLong = true
		}
	}
	return tooLong, badEnding
}
