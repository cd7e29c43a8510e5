// Package testutil holds helpers shared by kumogo's tests: a raw SMTP
// client over a real TCP socket (SMTPConn) that reads whole multi-line
// replies with deadlines, and a bare go-smtp discard server (StartBareSink)
// to use as a delivery peer.
package testutil

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kumogo/kumogo/internal/testutil/baresink"
)

// DefaultTimeout bounds each network read or write of an SMTPConn unless
// its Timeout field is changed.
const DefaultTimeout = 10 * time.Second

// maxReplyLines bounds a multi-line reply so a misbehaving server cannot
// keep a test reading forever.
const maxReplyLines = 1000

// maxLineBytes bounds one reply line.
const maxLineBytes = 64 << 10

// SMTPConn is a raw-protocol SMTP client for tests. It sends exactly the
// lines it is given and reads replies as the server wrote them. Its
// methods fail the test through the testing.TB given to Dial, so call them
// from the test's goroutine; ReadReply returns errors instead, for use
// anywhere.
type SMTPConn struct {
	// Timeout bounds each read and write; DefaultTimeout after Dial.
	Timeout time.Duration

	tb   testing.TB
	conn net.Conn
	r    *bufio.Reader
}

// Dial connects to addr over TCP and registers Close with tb.Cleanup. It
// does not read the greeting: follow with Expect(t, "220").
func Dial(tb testing.TB, addr string) *SMTPConn {
	tb.Helper()
	conn, err := net.DialTimeout("tcp", addr, DefaultTimeout)
	if err != nil {
		tb.Fatalf("dial %s: %v", addr, err)
	}
	c := &SMTPConn{Timeout: DefaultTimeout, tb: tb, conn: conn, r: bufio.NewReaderSize(conn, 4096)}
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// Wrap makes an SMTPConn of a connection that is already open, such as
// a *tls.Conn after STARTTLS; it registers Close with tb.Cleanup.
func Wrap(tb testing.TB, conn net.Conn) *SMTPConn {
	c := &SMTPConn{Timeout: DefaultTimeout, tb: tb, conn: conn, r: bufio.NewReaderSize(conn, 4096)}
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// Conn is the underlying connection (for TLS upgrades, half-closes, or
// local and remote addresses).
func (c *SMTPConn) Conn() net.Conn { return c.conn }

// Close closes the connection. Closing twice is harmless.
func (c *SMTPConn) Close() error {
	err := c.conn.Close()
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// Send writes line followed by CRLF. line must not contain the CRLF.
func (c *SMTPConn) Send(line string) {
	c.tb.Helper()
	c.SendRaw(line + "\r\n")
}

// SendRaw writes data exactly as given (message bodies, pipelined command
// groups, malformed input).
func (c *SMTPConn) SendRaw(data string) {
	c.tb.Helper()
	if err := c.conn.SetWriteDeadline(time.Now().Add(c.timeout())); err != nil {
		c.tb.Fatalf("smtp write deadline: %v", err)
	}
	if _, err := c.conn.Write([]byte(data)); err != nil {
		c.tb.Fatalf("smtp write %q: %v", abbrev(data), err)
	}
}

// Expect reads one full reply and fails the test unless it starts with
// want. The reply is compared as its lines joined by "\n" (each line as
// sent, without CRLF), so want may be a code ("250"), a prefix of the
// first line ("250-host"), an exact single-line reply ("250 OK <a@b>"), or
// several leading lines. It returns the reply's lines.
func (c *SMTPConn) Expect(tb testing.TB, want string) []string {
	tb.Helper()
	_, lines, err := c.ReadReply()
	if err != nil {
		tb.Fatalf("expecting %q: %v", want, err)
	}
	if got := strings.Join(lines, "\n"); !strings.HasPrefix(got, want) {
		tb.Fatalf("reply mismatch:\n got: %q\nwant: %q (prefix)", got, want)
	}
	return lines
}

// Cmd sends line and expects a reply starting with want (see Expect).
func (c *SMTPConn) Cmd(tb testing.TB, line, want string) []string {
	tb.Helper()
	c.Send(line)
	return c.Expect(tb, want)
}

// ReadReply reads one full reply: every "NNN-text" continuation line and
// the final "NNN text" (or bare "NNN") line. lines holds each line as sent
// without its CRLF; code is the final line's code. A reply whose lines
// disagree on the code, a malformed line, a timeout or a closed connection
// is an error.
func (c *SMTPConn) ReadReply() (code int, lines []string, err error) {
	if err := c.conn.SetReadDeadline(time.Now().Add(c.timeout())); err != nil {
		return 0, nil, err
	}
	for i := 0; i < maxReplyLines; i++ {
		line, err := c.readLine()
		if err != nil {
			return 0, lines, err
		}
		lines = append(lines, line)
		n, more, err := parseReplyLine(line)
		if err != nil {
			return 0, lines, err
		}
		if i > 0 && n != code {
			return 0, lines, fmt.Errorf("reply line %q: code %d differs from %d", line, n, code)
		}
		code = n
		if !more {
			return code, lines, nil
		}
	}
	return 0, lines, fmt.Errorf("reply longer than %d lines", maxReplyLines)
}

func (c *SMTPConn) readLine() (string, error) {
	var b []byte
	for len(b) <= maxLineBytes {
		part, isPrefix, err := c.r.ReadLine()
		if err != nil {
			if len(b) > 0 {
				return "", fmt.Errorf("after partial line %q: %w", abbrev(string(b)), err)
			}
			return "", err
		}
		b = append(b, part...)
		if !isPrefix {
			return string(b), nil
		}
	}
	return "", fmt.Errorf("reply line longer than %d bytes", maxLineBytes)
}

func parseReplyLine(line string) (code int, more bool, err error) {
	if len(line) < 3 {
		return 0, false, fmt.Errorf("malformed reply line %q", line)
	}
	code, err = strconv.Atoi(line[:3])
	if err != nil || code < 200 || code > 599 {
		return 0, false, fmt.Errorf("malformed reply code in %q", line)
	}
	if len(line) == 3 {
		return code, false, nil
	}
	switch line[3] {
	case ' ':
		return code, false, nil
	case '-':
		return code, true, nil
	}
	return 0, false, fmt.Errorf("malformed reply separator in %q", line)
}

func (c *SMTPConn) timeout() time.Duration {
	if c.Timeout <= 0 {
		return DefaultTimeout
	}
	return c.Timeout
}

func abbrev(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// StartBareSink starts a bare go-smtp discard server on 127.0.0.1 (a free
// port) and returns its address and a stop function, also registered with
// tb.Cleanup. Use StartBareSinkServer to read the message counters.
func StartBareSink(tb testing.TB) (addr string, stop func()) {
	tb.Helper()
	s := StartBareSinkServer(tb)
	return s.Addr(), func() { _ = s.Close() }
}

// StartBareSinkServer is StartBareSink returning the running sink, whose
// Messages, Recipients, Bytes and Sessions counters tests can read. It is
// closed at tb's cleanup.
func StartBareSinkServer(tb testing.TB) *baresink.Sink {
	tb.Helper()
	s, err := baresink.Listen("127.0.0.1:0", nil)
	if err != nil {
		tb.Fatalf("start bare sink: %v", err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	return s
}
