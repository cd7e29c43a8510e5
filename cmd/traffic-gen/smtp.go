package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// smtpError is a reply that ended a command or a transaction.
type smtpError struct {
	cmd  string // the command that got the reply ("greeting" for the banner)
	code int
	text string // the reply text, lines joined with " / "
}

func (e *smtpError) Error() string {
	return fmt.Sprintf("%s: %d %s", e.cmd, e.code, e.text)
}

// reconnect reports whether the reply means "this connection is done, try
// another": 421, or 451 4.5.3 (too many recipients / commands).
func (e *smtpError) reconnect() bool {
	return e.code == 421 || e.code == 451 && strings.HasPrefix(e.text, "4.5.3")
}

// needsReconnect reports whether err leaves the connection unusable: a
// reconnect reply, a timeout, or any network / protocol error.
func needsReconnect(err error) bool {
	var se *smtpError
	if errors.As(err, &se) {
		return se.reconnect()
	}
	return true
}

// smtpConn is one client connection.
type smtpConn struct {
	nc      net.Conn
	tcp     *net.TCPConn  // the raw connection while not TLS, for writev
	bw      *bufio.Writer // used instead of writev under TLS
	r       *bufio.Reader
	timeout time.Duration

	pipelining bool
	chunking   bool
	tls        bool
	needRset   bool // the last transaction did not finish cleanly

	text []byte      // text of the last reply
	bufs [4][]byte   // backing array for writev
	iov  net.Buffers // reused writev vector
	dot  [3]byte     // ".\r\n"
}

// dialSMTP connects to target, reads the greeting and says EHLO (then
// STARTTLS and EHLO again when asked for and offered). Ending ctx aborts
// it at any step: a server slow to accept may leave a connection waiting
// for its greeting long after the run is over.
func dialSMTP(ctx context.Context, target, ehlo string, timeout time.Duration, starttls bool) (*smtpConn, error) {
	d := net.Dialer{Timeout: timeout}
	nc, err := d.DialContext(ctx, "tcp", target)
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", target, err)
	}
	nc.SetDeadline(time.Now().Add(timeout))
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	c := &smtpConn{nc: nc, timeout: timeout, dot: [3]byte{'.', '\r', '\n'}}
	c.tcp, _ = nc.(*net.TCPConn)
	if c.tcp == nil {
		c.bw = bufio.NewWriterSize(nc, 32*1024)
	}
	c.r = bufio.NewReaderSize(nc, 1024)
	if err := c.handshake(target, ehlo, starttls); err != nil {
		nc.Close()
		return nil, err
	}
	if !stop() {
		// ctx ended as the handshake finished: the deadline is (being) cut
		nc.Close()
		return nil, fmt.Errorf("connect %s: %w", target, context.Cause(ctx))
	}
	return c, nil
}

// handshake runs under the deadline dialSMTP set.
func (c *smtpConn) handshake(target, ehlo string, starttls bool) error {
	if code, err := c.readReply(); err != nil {
		return fmt.Errorf("greeting: %w", err)
	} else if code != 220 {
		return c.replyError("greeting", code)
	}
	exts, err := c.ehlo(ehlo)
	if err != nil {
		return err
	}
	if starttls && exts["STARTTLS"] {
		if err := c.command("STARTTLS", 220); err != nil {
			return err
		}
		host, _, err := net.SplitHostPort(target)
		if err != nil {
			host = target
		}
		tc := tls.Client(c.nc, &tls.Config{ServerName: host, InsecureSkipVerify: true})
		if err := tc.Handshake(); err != nil {
			return fmt.Errorf("STARTTLS handshake: %w", err)
		}
		c.nc, c.tcp, c.tls = tc, nil, true
		c.r.Reset(tc)
		c.bw = bufio.NewWriterSize(tc, 32*1024)
		if exts, err = c.ehlo(ehlo); err != nil {
			return err
		}
	}
	c.pipelining = exts["PIPELINING"]
	c.chunking = exts["CHUNKING"]
	return nil
}

// ehlo says EHLO (HELO when EHLO is refused) and returns the extension
// keywords offered.
func (c *smtpConn) ehlo(name string) (map[string]bool, error) {
	if err := c.write([]byte("EHLO " + name + "\r\n")); err != nil {
		return nil, fmt.Errorf("EHLO: %w", err)
	}
	code, err := c.readReply()
	if err != nil {
		return nil, fmt.Errorf("EHLO: %w", err)
	}
	if code == 421 {
		return nil, c.replyError("EHLO", code)
	}
	if code != 250 {
		if err := c.command("HELO "+name, 250); err != nil {
			return nil, err
		}
		return map[string]bool{}, nil
	}
	exts := map[string]bool{}
	for i, line := range strings.Split(string(c.text), "\n") {
		if i == 0 {
			continue // the greeting line
		}
		kw, _, _ := strings.Cut(line, " ")
		exts[strings.ToUpper(kw)] = true
	}
	return exts, nil
}

// command sends one command and expects want.
func (c *smtpConn) command(cmd string, want int) error {
	if err := c.write([]byte(cmd + "\r\n")); err != nil {
		return fmt.Errorf("%s: %w", verb(cmd), err)
	}
	code, err := c.readReply()
	if err != nil {
		return fmt.Errorf("%s: %w", verb(cmd), err)
	}
	if code != want {
		return c.replyError(verb(cmd), code)
	}
	return nil
}

func verb(cmd string) string {
	v, _, _ := strings.Cut(cmd, " ")
	return v
}

func (c *smtpConn) replyError(cmd string, code int) *smtpError {
	return &smtpError{cmd: cmd, code: code, text: strings.ReplaceAll(string(c.text), "\n", " / ")}
}

// write sends b.
func (c *smtpConn) write(b []byte) error {
	return c.writev(b)
}

// writev sends the pieces in one system call where it can.
func (c *smtpConn) writev(pieces ...[]byte) error {
	if c.tcp != nil {
		n := copy(c.bufs[:], pieces)
		c.iov = c.bufs[:n]
		_, err := c.iov.WriteTo(c.tcp)
		return err
	}
	for _, p := range pieces {
		if _, err := c.bw.Write(p); err != nil {
			return err
		}
	}
	return c.bw.Flush()
}

// readReply reads one (possibly multi-line) reply and returns its code;
// c.text holds the reply text without codes, lines separated by '\n'.
func (c *smtpConn) readReply() (int, error) {
	c.text = c.text[:0]
	for {
		line, err := c.r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			// an overlong line: keep its start, skip the rest
			long := append([]byte(nil), line...)
			for err == bufio.ErrBufferFull {
				_, err = c.r.ReadSlice('\n')
			}
			line = long
		}
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return 0, err
		}
		line = trimCRLF(line)
		if len(line) < 3 || !isDigit(line[0]) || !isDigit(line[1]) || !isDigit(line[2]) ||
			len(line) > 3 && line[3] != ' ' && line[3] != '-' {
			return 0, fmt.Errorf("malformed reply %q", line)
		}
		code := int(line[0]-'0')*100 + int(line[1]-'0')*10 + int(line[2]-'0')
		if len(c.text) > 0 {
			c.text = append(c.text, '\n')
		}
		if len(line) > 4 {
			c.text = append(c.text, line[4:]...)
		}
		if len(line) == 3 || line[3] == ' ' {
			return code, nil
		}
	}
}

func trimCRLF(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

func isDigit(b byte) bool { return b >= '0' && b <= '9' }

// expect reads one reply for cmd and checks it against the accepted codes.
// A 421 is returned as a failed reply at once (the server hangs up after it).
func (c *smtpConn) expect(cmd string, ok1, ok2 int) error {
	code, err := c.readReply()
	if err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	if code != ok1 && code != ok2 {
		return c.replyError(cmd, code)
	}
	return nil
}

// send runs one transaction built by b. The envelope is pipelined when
// the server offers PIPELINING; with BDAT (bdat and CHUNKING) the whole
// transaction is one write and one round trip.
func (c *smtpConn) send(b *messageBuilder, now time.Time, bdat bool) error {
	bdat = bdat && c.chunking
	rset := c.needRset
	cmds, hdr := b.build(now, rset, bdat)
	c.needRset = true // until the transaction completes
	c.nc.SetDeadline(now.Add(c.timeout))
	if !c.pipelining {
		return c.sendStepwise(cmds, hdr, b.p, rset, bdat)
	}
	var err error
	if bdat {
		err = c.writev(cmds, b.p.body)
	} else {
		err = c.write(cmds)
	}
	if err != nil {
		return fmt.Errorf("write: %w", err)
	}
	// read every reply of the pipeline; remember the first failure
	var first error
	check := func(cmd string, ok1, ok2 int) error {
		err := c.expect(cmd, ok1, ok2)
		if err != nil && first == nil {
			first = err
		}
		return err
	}
	fatal := func(err error) bool { return err != nil && needsReconnect(err) }
	if rset {
		if err := check("RSET", 250, 250); fatal(err) {
			return err
		}
	}
	if err := check("MAIL", 250, 250); fatal(err) {
		return err
	}
	if err := check("RCPT", 250, 251); fatal(err) {
		return err
	}
	if bdat {
		if err := check("BDAT", 250, 250); fatal(err) {
			return err
		}
		if first == nil {
			c.needRset = false
		}
		return first
	}
	code, err := c.readReply()
	if err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	if code != 354 {
		if first == nil {
			first = c.replyError("DATA", code)
		}
		return first
	}
	if first != nil {
		// the server wants content although the envelope failed: end it
		if err := c.write(c.dot[:]); err != nil {
			return fmt.Errorf("write: %w", err)
		}
		if _, err := c.readReply(); err != nil {
			return fmt.Errorf("end of data: %w", err)
		}
		return first
	}
	return c.sendContent(hdr, b.p)
}

// sendContent sends the DATA content and reads the final reply.
func (c *smtpConn) sendContent(hdr []byte, p *payload) error {
	if err := c.writev(hdr, p.stuffedBody, c.dot[:]); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if err := c.expect("end of data", 250, 250); err != nil {
		return err
	}
	c.needRset = false
	return nil
}

// sendStepwise runs a transaction one command at a time (no PIPELINING).
func (c *smtpConn) sendStepwise(cmds, hdr []byte, p *payload, rset, bdat bool) error {
	next := func() []byte {
		i := indexCRLF(cmds)
		line := cmds[:i+2]
		cmds = cmds[i+2:]
		return line
	}
	step := func(name string, ok1, ok2 int) error {
		if err := c.write(next()); err != nil {
			return fmt.Errorf("write: %w", err)
		}
		return c.expect(name, ok1, ok2)
	}
	if rset {
		if err := step("RSET", 250, 250); err != nil {
			return err
		}
	}
	if err := step("MAIL", 250, 250); err != nil {
		return err
	}
	if err := step("RCPT", 250, 251); err != nil {
		return err
	}
	if bdat {
		// cmds is now "BDAT n LAST\r\n" + header block
		if err := c.writev(cmds, p.body); err != nil {
			return fmt.Errorf("write: %w", err)
		}
		if err := c.expect("BDAT", 250, 250); err != nil {
			return err
		}
		c.needRset = false
		return nil
	}
	if err := step("DATA", 354, 354); err != nil {
		return err
	}
	return c.sendContent(hdr, p)
}

func indexCRLF(b []byte) int {
	for i := 0; i+1 < len(b); i++ {
		if b[i] == '\r' && b[i+1] == '\n' {
			return i
		}
	}
	return len(b) - 2
}

// quitWait bounds QUIT: its write and the wait for the reply. At the end
// of a run every connection says QUIT at once, and a server busy with
// thousands of them must not hold up the summary.
const quitWait = 200 * time.Millisecond

// quitAndClose says QUIT (waiting at most quitWait for the reply) and
// closes.
func (c *smtpConn) quitAndClose() {
	c.nc.SetDeadline(time.Now().Add(quitWait))
	if c.write([]byte("QUIT\r\n")) == nil {
		c.readReply()
	}
	c.nc.Close()
}
