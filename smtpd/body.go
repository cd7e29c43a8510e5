package smtpd

import (
	"bytes"
	"errors"
	"io"
	"net"
	"time"
)

// Bodies are read by the session's own readers, the fast paths of the
// listener.
//
// DATA: the body has exactly one scanner, bodyScan, run on the socket's
// buffered reader. It decides where the body ends, removes the stuffing
// dots and notes over-long lines and bare line endings. go-smtp's own DATA
// reader never sees the body: Data reads it through dataBody, and once the
// end is found go-smtp's reader reads the client's end-of-data line and
// nothing else (session.Read), so that the two can never disagree about
// where a body ends whatever bare CRs and LFs the client sends (SMTP
// smuggling).
//
// BDAT: every chunk is read here (readChunk) into the transaction's body,
// and the session answers the chunks before the last. After the last one
// it finishes the message itself, on the connection's goroutine (endBDAT:
// the same checks and hand-off as Data), and gives go-smtp "BDAT 0 LAST",
// so that go-smtp ends its own transaction; the Data call that go-smtp
// makes for that empty chunk returns the outcome, and the seam sends the
// session's reply. go-smtp runs Data of a BDAT transaction on a goroutine
// of its own, and its reset (RSET, EHLO) closes that body's pipe without
// waiting for the goroutine, whose late result can then answer the next
// transaction's last chunk (conn.go of github.com/emersion/go-smtp
// v0.26.0: handleBdat, reset). As go-smtp never holds a BDAT body, no
// reset can fall inside one. Reading the last chunk here also spares what
// go-smtp's path costs per message: a 32 KB copy buffer (io.Copy), a copy
// of the body through an io.Pipe, and the stack growth of a fresh
// goroutine running the policy's events.
// Every chunk's bytes are held to DATA's line rules as they are read
// (lineCheck, fed by bodyBuf.fill), not in a second pass over the body.
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
	limit     int  // line_length_hard_limit (0: none)
	lineLen   int  // raw bytes of the current line seen so far
	startOK   bool // the current line started after CRLF (or opens the body)
	first     byte // the current line's first byte
	prevCR    bool // the last byte seen was a CR
	tooLong   bool
	badEnding bool
}

func (b *bodyScan) reset(limit int) {
	*b = bodyScan{limit: limit, startOK: true}
}

// endLine is the end-of-data line that follows a CRLF.
const endLine = ".\r\n"

// scan copies body bytes from src to dst, leaving out the stuffing dot at
// the start of every line that starts after a CRLF. It returns the bytes
// written and read (no more than dst holds), and whether the end-of-data
// line follows what was read: that line itself is never consumed, so that
// go-smtp's DATA reader reads the client's own end of data. A line that
// starts with "." or ".\r" at the end of src cannot be told from the end
// line yet: scan stops before it, and returns 0, 0, false when it is all
// src holds (the caller must then read more).
func (b *bodyScan) scan(dst, src []byte) (nw, nr int, end bool) {
	full := src
	if len(src) > len(dst) {
		src = src[:len(dst)]
	}
	for nr < len(src) {
		if b.lineLen == 0 && b.startOK && src[nr] == '.' {
			rest := full[nr:]
			if len(rest) >= len(endLine) && string(rest[:len(endLine)]) == endLine {
				return nw, nr, true
			}
			if len(rest) < len(endLine) && string(rest) == endLine[:len(rest)] {
				return nw, nr, false // maybe the end line: read more first
			}
		}
		seg := src[nr:]
		j := bytes.IndexByte(seg, '\n')
		if j >= 0 {
			seg = seg[:j+1]
		}
		out := seg
		if b.lineLen == 0 {
			b.first = seg[0]
			if b.first == '.' && b.startOK {
				out = seg[1:] // a stuffing dot
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
		nw += copy(dst[nw:], out)
		b.startOK = crlf
		b.lineLen, b.prevCR = 0, false
	}
	return nw, nr, false
}

// minBodyRate is the slowest average rate, in bytes per second, at which a
// client may send a body (DATA, or one BDAT chunk) once client_timeout has
// passed: a body must be complete by client_timeout plus one second per
// minBodyRate bytes received. client_timeout alone bounds each read, so a
// client sending one byte at a time could otherwise hold a session for
// ever.
const minBodyRate = 1024

// startBody starts the clock of a body transfer.
func (ss *session) startBody() {
	ss.bodyStart, ss.bodyBytes = time.Now(), 0
}

// bodyReadDeadline sets the read deadline for the next read of a body:
// client_timeout from now, but never past the body's own deadline.
func (ss *session) bodyReadDeadline() {
	now := time.Now()
	d := now.Add(ss.cfg.ClientTimeout)
	limit := ss.bodyStart.Add(ss.cfg.ClientTimeout + time.Duration(ss.bodyBytes)*time.Second/minBodyRate)
	if limit.Before(d) {
		d = limit
	}
	ss.raw.SetReadDeadline(d)
}

// bodyReadFailed answers a body read that failed: a timeout (a stall, or a
// transfer slower than minBodyRate) gets KumoMTA's idle reply; either way
// the session ends. No error text reaches the client.
func (ss *session) bodyReadFailed(err error) {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		if time.Since(ss.bodyStart) >= ss.cfg.ClientTimeout {
			ss.s.log.Info().Str("peer", ss.peer.String()).Int64("bytes", ss.bodyBytes).Dur("elapsed", time.Since(ss.bodyStart)).Msg("body transfer stalled or too slow; ending session")
		}
		ss.reply(421, textIdleTooLong(ss.host()))
		ss.flush()
	}
	ss.closing = true
	ss.ended = true // go-smtp's answer to the failed read is never sent
}

// errBodyRead ends a body read that failed; the client has been answered
// already (bodyReadFailed), so nothing more is said.
var errBodyRead = errors.New("smtpd: reading the message body failed")

// startData starts a DATA body, once go-smtp has accepted the command
// (it calls Data only then): the session's 354 replaces go-smtp's.
func (ss *session) startData() {
	ss.dropHeld()
	ss.reply(354, "Send body; end with CRLF.CRLF")
	ss.mode = modeData
	ss.scan.reset(ss.cfg.LineLengthHardLimit)
	ss.startBody()
}

// dataBody reads a DATA body through the scanner; it returns io.EOF once
// the end-of-data line is next, leaving that line buffered for go-smtp.
type dataBody struct{ ss *session }

func (d dataBody) Read(p []byte) (int, error) {
	ss := d.ss
	if ss.mode != modeData {
		return 0, io.EOF
	}
	need := 1 // bytes that must be buffered before scanning
	for {
		if ss.rd.Buffered() < need {
			ss.flush()
			ss.bodyReadDeadline()
			if _, err := ss.rd.Peek(need); err != nil {
				ss.bodyReadFailed(err)
				return 0, errBodyRead
			}
		}
		n := ss.rd.Buffered()
		chunk, _ := ss.rd.Peek(n)
		nw, nr, end := ss.scan.scan(p, chunk)
		ss.rd.Discard(nr)
		ss.bodyBytes += int64(nr)
		if end {
			ss.mode = modeDataEnd
			if nw == 0 {
				return 0, io.EOF
			}
			return nw, nil
		}
		if nw > 0 {
			return nw, nil
		}
		need = 1
		if nr == 0 {
			// a line that may be the end line needs its next bytes
			need = ss.rd.Buffered() + 1
		}
	}
}

// readCounted reads at most *left bytes of a BDAT chunk from the socket.
// Replies still queued are written before it would block: clients that
// send "BDAT <n>" and wait for the replies to the MAIL and RCPT pipelined
// before it, before they send the chunk, exist (TestBodyMemoryBudget's
// client is one), although RFC 3030 has the chunk follow at once.
func (ss *session) readCounted(p []byte, left *int64) (int, error) {
	if ss.rd.Buffered() == 0 {
		ss.flush()
	}
	if int64(len(p)) > *left {
		p = p[:*left]
	}
	ss.bodyReadDeadline()
	n, err := ss.rd.Read(p)
	*left -= int64(n)
	ss.bodyBytes += int64(n)
	if err != nil {
		ss.bodyReadFailed(err)
		return n, errBodyRead
	}
	return n, nil
}

// chunkReader reads a BDAT chunk.
type chunkReader struct {
	ss   *session
	left int64
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if c.left == 0 {
		return 0, io.EOF
	}
	return c.ss.readCounted(p, &c.left)
}

// readChunk reads a BDAT chunk into the transaction's body. It reports
// false when the read failed (the client has been answered and the session
// ends).
func (ss *session) readChunk(size int64) bool {
	t := &ss.t
	t.mu.Lock()
	defer t.mu.Unlock()
	cfg := ss.cfg
	ss.chunk = chunkReader{ss: ss, left: size}
	if !t.body.lines.on {
		t.body.lines.start(cfg.LineLengthHardLimit) // the body's first chunk
	}
	err := t.body.fill(&ss.chunk, ss.s.budget, cfg.MaxMessageSize, cfg.ClientTimeout)
	return err == nil
}
