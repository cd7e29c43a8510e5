package smtpd

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kumogo/kumogo/internal/message"
)

// refFrame is the reference framing of a DATA body, written as plainly as
// possible: the body ends at the first CRLF "." CRLF, counting a CRLF in
// front of the body; every "." that follows a CRLF is a stuffing dot. It
// returns the unstuffed body, the bytes after the end-of-data line, and
// whether the end was found; bad tells whether the raw body holds a bare CR
// or a bare LF.
func refFrame(s []byte) (body, rest []byte, bad, ok bool) {
	t := append([]byte("\r\n"), s...)
	i := bytes.Index(t, []byte("\r\n.\r\n"))
	if i < 0 {
		return nil, nil, false, false
	}
	raw := t[2 : i+2]
	rest = t[i+5:]
	body = bytes.ReplaceAll(append([]byte("\r\n"), raw...), []byte("\r\n."), []byte("\r\n"))[2:]
	for j, c := range raw {
		if c == '\r' && (j+1 == len(raw) || raw[j+1] != '\n') || c == '\n' && (j == 0 || raw[j-1] != '\r') {
			bad = true
		}
	}
	return body, rest, bad, true
}

// scanAll runs bodyScan over s in reads of the given sizes (cycled).
func scanAll(s []byte, sizes []byte) (body []byte, consumed int, bad, end bool) {
	var b bodyScan
	b.reset(0)
	extra := 0
	for k := 0; consumed < len(s); k++ {
		n := len(s) - consumed
		if len(sizes) > 0 {
			if m := int(sizes[k%len(sizes)]) + 1 + extra; m < n {
				n = m
			}
		}
		dst := make([]byte, n)
		if k%3 == 1 {
			dst = make([]byte, n+1)
		}
		nw, nr, e := b.scan(dst, s[consumed:consumed+n])
		body = append(body, dst[:nw]...)
		consumed += nr
		if e {
			// the end line is left for go-smtp's reader
			return body, consumed + len(endLine), b.badEnding, true
		}
		if nr == 0 && nw == 0 {
			// a line that may be the end line: the next read must be
			// longer (the listener peeks one more byte)
			if consumed+n >= len(s) {
				break
			}
			extra++
			continue
		}
		extra = 0
	}
	return body, consumed, b.badEnding, false
}

var smugglingSeeds = []string{
	"\n.\n", "\r.\r", "\r\r\n.\r\n", ".\r\r\n.\r\n", "\n.\r\n", "\r\n.\n", "\r\n.\r", "\r.\r\n",
	"\r\n.\r\r\n", "\r\n..\r\n", "\r\n\r\n.\r\n", ".\r\n", "\r\n.\r\n", "\n\r\n.\r\n", "\r\r\n",
	"\r\n.\r\nMAIL FROM:<evil@x.example>\r\n", "x\r\n", "",
}

// FuzzDataFraming compares the one DATA scanner with refFrame, the input
// cut into reads of arbitrary sizes: the same end, the same body, the same
// verdict on line endings, whatever the bytes.
func FuzzDataFraming(f *testing.F) {
	for _, s := range smugglingSeeds {
		f.Add([]byte("a"+s+"b\r\n.\r\nrest"), []byte{0})
		f.Add([]byte(s), []byte{2, 0, 5})
		f.Add([]byte("x\r\n"+s), []byte{})
	}
	f.Fuzz(func(t *testing.T, in, sizes []byte) {
		body, consumed, bad, end := scanAll(in, sizes)
		rbody, rest, rbad, rend := refFrame(in)
		if end != rend {
			t.Fatalf("%q: end %v, reference %v", in, end, rend)
		}
		if !end {
			// all consumed, but for the start of a line that may still be
			// the end line (the scanner waits for its next bytes)
			if held := string(in[consumed:]); len(held) >= len(endLine) || !strings.HasPrefix(endLine, held) {
				t.Fatalf("%q: %d bytes consumed without an end", in, consumed)
			}
			return
		}
		if consumed != len(in)-len(rest) || !bytes.Equal(body, rbody) || bad != rbad {
			t.Fatalf("%q (reads %v): body %q consumed %d bad %v; reference body %q consumed %d bad %v",
				in, sizes, body, consumed, bad, rbody, len(in)-len(rest), rbad)
		}
	})
}

// smugglingServer starts a listener in mode that keeps every message it
// receives.
func smugglingServer(t testing.TB, mode string) (*testServer, func() []string) {
	var mu sync.Mutex
	var got []string
	p := &fakePolicy{received: func(m *message.Message) error {
		m.SetMeta("queue", "null")
		d := string(m.Data())
		if i := strings.Index(d, "\r\n\r\n"); i >= 0 && strings.HasPrefix(d, "Received:") {
			d = d[i+4:] // the Received header and the blank line of the test's header
		}
		mu.Lock()
		got = append(got, d)
		mu.Unlock()
		return nil
	}}
	cfg := testConfig()
	cfg.InvalidLineEndings = mode
	cfg.ClientTimeout = 5 * time.Second
	ts := startServer(t, cfg, p)
	return ts, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), got...)
	}
}

// TestSmugglingSequences sends each smuggling sequence inside a DATA body,
// in each invalid_line_endings mode, then a BDAT transaction and a NOOP.
// The body ends where refFrame says (CRLF.CRLF and nowhere else); what
// follows it is taken as commands; one DATA gives at most one message; and
// the session stays in step: the BDAT transaction and the NOOP get their
// own replies.
func TestSmugglingSequences(t *testing.T) {
	for _, mode := range []string{"Deny", "Allow", "Fix"} {
		ts, got := smugglingServer(t, mode)
		for _, v := range smugglingSeeds {
			body := "H: 1\r\n\r\na" + v + "b\r\n.\r\n"
			rbody, rest, bad, _ := refFrame([]byte(body))
			c := greet(t, ts.addr)
			before := len(got())
			c.Cmd(t, "MAIL FROM:<a@x.example>", "250")
			c.Cmd(t, "RCPT TO:<b@y.example>", "250")
			c.Cmd(t, "DATA", "354")
			c.SendRaw(body)
			want := "250 OK ids="
			if bad && mode == "Deny" {
				want = "552 5.6.0 message data must use CRLF for line endings"
			}
			c.Expect(t, want)
			// what followed the end of data: one reply per command line
			for _, line := range strings.SplitAfter(string(rest), "\r\n") {
				if line == "" {
					continue
				}
				c.ReadReply()
			}
			c.Cmd(t, "RSET", "250 Reset state") // the rest may have opened a transaction
			c.SendRaw("MAIL FROM:<a@x.example>\r\nRCPT TO:<b@y.example>\r\nBDAT 12 LAST\r\nH: 2\r\n\r\nbdatNOOP\r\n")
			c.Expect(t, "250 OK a@x.example")
			c.Expect(t, "250 OK b@y.example")
			c.Expect(t, "250 OK ids=")
			c.Expect(t, "250 the goggles do nothing")
			c.Cmd(t, "QUIT", "221")
			c.Close()
			msgs := got()[before:]
			wantMsgs := 2
			if bad && mode == "Deny" {
				wantMsgs = 1
			}
			if len(msgs) != wantMsgs || msgs[len(msgs)-1] != "bdat" {
				t.Fatalf("%s %q: messages %q", mode, v, msgs)
			}
			if wantMsgs == 2 {
				want := strings.TrimPrefix(string(rbody), "H: 1\r\n\r\n")
				if mode == "Fix" {
					want = string(message.CanonicalLineEndings([]byte(want)))
				}
				if msgs[0] != want {
					t.Fatalf("%s %q: body %q, want %q", mode, v, msgs[0], want)
				}
			}
		}
	}
}

// FuzzDataSession plays a DATA body of arbitrary bytes in every
// invalid_line_endings mode and checks the session against refFrame: one
// reply to the DATA (250 or a rejection), the received body is the
// reference body (Allow), and the NOOP sent after the body is answered as
// a NOOP: the session never falls out of step.
func FuzzDataSession(f *testing.F) {
	for _, s := range smugglingSeeds {
		f.Add([]byte("a" + s + "b"))
	}
	servers := map[string]*testServer{}
	gots := map[string]func() []string{}
	for _, mode := range []string{"Deny", "Allow", "Fix"} {
		servers[mode], gots[mode] = smugglingServer(f, mode)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) > 4096 {
			return
		}
		stream := append([]byte("H: 1\r\n\r\n"), in...)
		stream = append(stream, "\r\n.\r\nNOOP\r\n"...)
		rbody, rest, bad, _ := refFrame(stream)
		if string(rest) != "NOOP\r\n" {
			return // the input ends the body itself; TestSmugglingSequences covers what follows
		}
		for _, mode := range []string{"Deny", "Allow", "Fix"} {
			before := len(gots[mode]())
			conn, err := net.Dial("tcp", servers[mode].addr)
			if err != nil {
				t.Fatal(err)
			}
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			conn.Write([]byte("EHLO x\r\nMAIL FROM:<a@x.example>\r\nRCPT TO:<b@y.example>\r\nDATA\r\n"))
			r := bufio.NewReader(conn)
			var replies []string
			for len(replies) < 5 { // banner, EHLO (last line), MAIL, RCPT, 354
				line, err := r.ReadString('\n')
				if err != nil {
					t.Fatalf("%s: %v after %q", mode, err, replies)
				}
				if len(line) > 3 && line[3] == '-' {
					continue
				}
				replies = append(replies, line)
			}
			conn.Write(stream)
			dataReply, err1 := r.ReadString('\n')
			noop, err2 := r.ReadString('\n')
			conn.Close()
			if err1 != nil || err2 != nil {
				t.Fatalf("%s %q: replies %q %q: %v %v", mode, in, dataReply, noop, err1, err2)
			}
			wantData := "250 OK ids="
			if bad && mode == "Deny" {
				wantData = "552 5.6.0 "
			}
			if !strings.HasPrefix(dataReply, wantData) && !strings.HasPrefix(dataReply, "500 5.2.3 line too long") {
				t.Fatalf("%s %q: DATA reply %q", mode, in, dataReply)
			}
			if noop != "250 the goggles do nothing\r\n" {
				t.Fatalf("%s %q: out of step: NOOP answered %q", mode, in, noop)
			}
			msgs := gots[mode]()[before:]
			if strings.HasPrefix(dataReply, "250") != (len(msgs) == 1) || len(msgs) > 1 {
				t.Fatalf("%s %q: %d messages for reply %q", mode, in, len(msgs), dataReply)
			}
			if mode == "Allow" && len(msgs) == 1 && msgs[0] != strings.TrimPrefix(string(rbody), "H: 1\r\n\r\n") {
				t.Fatalf("Allow %q: body %q, reference %q", in, msgs[0], rbody)
			}
		}
	})
}

// TestSmugglingWithSMTPLib: normal mail from Python's smtplib still works
// (dot-stuffing included) in every mode.
func TestSmugglingWithSMTPLib(t *testing.T) {
	for _, mode := range []string{"Deny", "Allow", "Fix"} {
		ts, got := smugglingServer(t, mode)
		host, port, _ := net.SplitHostPort(ts.addr)
		out, err := exec.Command("python3", "-c", `
import smtplib, sys
s = smtplib.SMTP(sys.argv[1], int(sys.argv[2]), timeout=10)
s.ehlo('client.example')
s.sendmail('a@x.example', ['b@y.example'], 'H: 1\r\n\r\nline one\r\n.starts with a dot\r\n..two dots\r\n.\r\nlast\r\n')
s.quit()
print('sent')
`, host, port).CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "sent" {
			t.Fatalf("%s: smtplib: %s", mode, out)
		}
		msgs := got()
		if len(msgs) != 1 || msgs[0] != "line one\r\n.starts with a dot\r\n..two dots\r\n.\r\nlast\r\n" {
			t.Fatalf("%s: %q", mode, msgs)
		}
	}
}

// TestBDATLineEndings: a BDAT body is held to invalid_line_endings as a
// DATA body is: bare CRs ("\r.\r", "\r.\r\n", a final "\r") and bare LFs
// are refused by Deny, made CRLF by Fix and kept by Allow; an over-long
// line is refused.
func TestBDATLineEndings(t *testing.T) {
	bodies := []string{"a\r.\rb\r\n", "a\r.\r\n", "a\r", "a\nb\r\n", "x\r\r\n.\r\n"}
	for _, mode := range []string{"Deny", "Allow", "Fix"} {
		ts, got := smugglingServer(t, mode)
		c := greet(t, ts.addr)
		for _, b := range bodies {
			before := len(got())
			c.Cmd(t, "MAIL FROM:<a@x.example>", "250")
			c.Cmd(t, "RCPT TO:<b@y.example>", "250")
			c.SendRaw(fmt.Sprintf("BDAT %d LAST\r\n%s", len(b)+len("H: 1\r\n\r\n"), "H: 1\r\n\r\n"+b))
			if mode == "Deny" {
				c.Expect(t, "552 5.6.0 message data must use CRLF for line endings")
				continue
			}
			c.Expect(t, "250 OK ids=")
			want := b
			if mode == "Fix" {
				want = string(message.CanonicalLineEndings([]byte(b)))
			}
			if msgs := got()[before:]; len(msgs) != 1 || msgs[0] != want {
				t.Fatalf("%s %q: received %q, want %q", mode, b, msgs, want)
			}
		}
		c.Cmd(t, "MAIL FROM:<a@x.example>", "250")
		c.Cmd(t, "RCPT TO:<b@y.example>", "250")
		long := strings.Repeat("y", 999) + "\r\n"
		c.SendRaw(fmt.Sprintf("BDAT %d LAST\r\n%s", len(long), long))
		c.Expect(t, "500 5.2.3 line too long")
		c.Cmd(t, "NOOP", "250 the goggles")
	}
}
