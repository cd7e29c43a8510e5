package egress

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/kumogo/kumogo/internal/smtpreply"
)

// This file is the session's transport: writing commands and reading
// responses under the path's timeouts, and turning transport failures
// into the synthetic responses that log records carry.

// ioError is a transport failure of one command: a broken connection or a
// timeout. The session is unusable afterwards.
type ioError struct {
	cmd     string        // the command line (with CRLF) or "" for the banner
	write   bool          // failed while writing
	timeout time.Duration // > 0 when the deadline passed
	err     error
}

func (e *ioError) Error() string {
	cmd := strings.TrimRight(e.cmd, "\r\n")
	if e.timeout > 0 {
		if e.write {
			return fmt.Sprintf("Timed Out writing %s %q", fmtDuration(e.timeout), cmd)
		}
		if e.cmd == "" {
			return fmt.Sprintf("Timed Out waiting %s for response", fmtDuration(e.timeout))
		}
		return fmt.Sprintf("Timed Out waiting %s for response to %q", fmtDuration(e.timeout), cmd)
	}
	return e.err.Error()
}

func (e *ioError) Unwrap() error { return e.err }

// response is the synthetic response recorded for a transport failure,
// with KumoMTA's texts (KumoMTA docs: "Log Record", TransientFailure
// records): 421 4.4.2 for timeouts, 400 otherwise.
func (e *ioError) response() smtpreply.Response {
	if e.timeout > 0 {
		return smtpreply.Response{Code: 421, Enhanced: enh(4, 4, 2), Content: textSendFailed + e.Error(), Command: e.cmd}
	}
	return smtpreply.Response{Code: 400, Content: textSendFailed + e.Error()}
}

// fmtDuration renders like Rust's Duration debug form for whole seconds
// ("300s") and like Go otherwise ("250ms").
func fmtDuration(d time.Duration) string {
	if d%time.Second == 0 {
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	}
	return d.String()
}

var longAgo = time.Unix(1, 0)

// watch makes ctx's end interrupt blocked reads and writes. The returned
// function stops watching.
func (s *Session) watch(ctx context.Context) func() {
	if ctx.Done() == nil {
		return func() {}
	}
	conn := s.conn
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(longAgo) })
	return func() { stop() }
}

// deadline sets the read or write deadline and fails if ctx already ended
// (the watcher may have fired before the deadline was set).
func (s *Session) deadline(ctx context.Context, write bool, d time.Duration) error {
	var t time.Time
	if d > 0 {
		t = time.Now().Add(d)
	}
	var err error
	if write {
		err = s.conn.SetWriteDeadline(t)
	} else {
		err = s.conn.SetReadDeadline(t)
	}
	if err != nil {
		return err
	}
	return ctx.Err()
}

// fail wraps a transport error of cmd and marks the session broken.
func (s *Session) fail(ctx context.Context, cmd string, write bool, timeout time.Duration, err error) error {
	s.broken = true
	e := &ioError{cmd: cmd, write: write, err: err}
	if ce := ctx.Err(); ce != nil {
		e.err = ce
		return e
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		e.timeout = timeout
	}
	return e
}

// roundTrip writes one command and reads its response. The command goes
// out in one write straight to the connection: a command is one line, so
// a write buffer per session (16 KB each) would only hold memory for
// every connection open.
func (s *Session) roundTrip(ctx context.Context, cmd string, timeout time.Duration) (smtpreply.Response, error) {
	if err := s.deadline(ctx, true, timeout); err != nil {
		return smtpreply.Response{}, s.fail(ctx, cmd, true, timeout, err)
	}
	if _, err := io.WriteString(s.conn, cmd); err != nil {
		return smtpreply.Response{}, s.fail(ctx, cmd, true, timeout, err)
	}
	return s.read(ctx, cmd, timeout)
}

// read reads one complete response to cmd within timeout. A 421 marks the
// session unusable.
func (s *Session) read(ctx context.Context, cmd string, timeout time.Duration) (smtpreply.Response, error) {
	if err := s.deadline(ctx, false, timeout); err != nil {
		return smtpreply.Response{}, s.fail(ctx, cmd, false, timeout, err)
	}
	resp := smtpreply.Response{Command: cmd}
	var content strings.Builder
	for n := 0; ; n++ {
		line, err := s.r.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				return smtpreply.Response{}, s.fail(ctx, cmd, false, timeout, errors.New("response line is too long"))
			}
			if errors.Is(err, io.EOF) {
				err = errors.New("connection closed by peer")
			}
			return smtpreply.Response{}, s.fail(ctx, cmd, false, timeout, err)
		}
		line = trimCRLF(line)
		code, more, text, ok := parseLine(line)
		if !ok || (n > 0 && code != resp.Code) {
			return smtpreply.Response{}, s.fail(ctx, cmd, false, timeout, fmt.Errorf("malformed response line %q", line))
		}
		if n == 0 {
			resp.Code = code
			if e, rest, ok := smtpreply.CutEnhanced(code, text); ok {
				resp.Enhanced, text = e, rest
			}
		} else {
			content.WriteByte('\n')
			if resp.Enhanced != nil {
				if e, rest, ok := smtpreply.CutEnhanced(code, text); ok && *e == *resp.Enhanced {
					text = rest
				}
			}
		}
		content.WriteString(text)
		if !more {
			break
		}
		if n+1 >= maxLines {
			return smtpreply.Response{}, s.fail(ctx, cmd, false, timeout, errors.New("response has too many lines"))
		}
	}
	resp.Content = content.String()
	if resp.Code == 421 {
		s.broken = true
	}
	return resp, nil
}

func trimCRLF(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
	}
	if n := len(b); n > 0 && b[n-1] == '\r' {
		b = b[:n-1]
	}
	return b
}

// parseLine splits "NNN-text", "NNN text" or "NNN".
func parseLine(line []byte) (code int, more bool, text string, ok bool) {
	if len(line) < 3 {
		return 0, false, "", false
	}
	for i := 0; i < 3; i++ {
		c := line[i]
		if c < '0' || c > '9' {
			return 0, false, "", false
		}
		code = code*10 + int(c-'0')
	}
	if code < 100 {
		return 0, false, "", false
	}
	if len(line) == 3 {
		return code, false, "", true
	}
	switch line[3] {
	case ' ':
	case '-':
		more = true
	default:
		return 0, false, "", false
	}
	return code, more, string(line[4:]), true
}

func newSessionID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var out [36]byte
	hex.Encode(out[0:8], b[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], b[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], b[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], b[8:10])
	out[23] = '-'
	hex.Encode(out[24:], b[10:])
	return string(out[:])
}
