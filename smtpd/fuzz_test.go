package smtpd

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	"github.com/kumogo/kumogo/internal/testutil"
)

// FuzzSession plays arbitrary client bytes against a listener with the
// null-queue policy, then closes the client's write side. Whatever the
// client sends, every reply must be a well-formed SMTP line ("NNN-" or
// "NNN " with a three-digit code, CRLF-terminated), the server must end the
// session once the client is done, and the daemon must keep serving.
func FuzzSession(f *testing.F) {
	for _, seed := range []string{
		"EHLO x\r\nMAIL FROM:<a@x.example>\r\nRCPT TO:<b@y.example>\r\nDATA\r\nSubject: hi\r\n\r\nbody\r\n.\r\nQUIT\r\n",
		"EHLO x\r\nMAIL FROM:<a@x.example> SIZE=10 BODY=8BITMIME\r\nRCPT TO:<b@y.example>\r\nBDAT 12 LAST\r\nSubject: x\r\n\r\nQUIT\r\n",
		"EHLO x\r\nMAIL FROM:<a@x.example>\r\nRCPT TO:<b@y.example>\r\nBDAT 5\r\nabcdeBDAT 0 LAST\r\nRSET\r\nNOOP\r\n",
		"HELO x\r\nMAIL FROM:<>\r\nRCPT TO:<\"quoted user\"@[127.0.0.1]>\r\nDATA\r\n..dot\r\n.\r\n",
		"EHLO x\r\nDATA\r\nRCPT TO:<b@y>\r\nMAIL FROM:<a@x> SMTPUTF8\r\nMAIL FROM:<a@x>\r\n",
		"EHLO x\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\nbare\nlf\r\n.\r\n",
		"EHLO x\r\nSTARTTLS\r\n\x16\x03\x01\x00\x05hello",
		"EHLO x\r\nAUTH PLAIN AGFAYg==\r\nAUTH LOGIN\r\n*\r\n",
		"VRFY a\r\nEXPN b\r\nHELP\r\nXYZZY\r\n\r\n \r\n",
		"EHLO \xff\xfe\r\nMAIL FROM:<\xc3\x28@x>\r\n",
		"EHLO x\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nBDAT 99999999999999999999 LAST\r\n",
		"EHLO x\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nBDAT -1\r\nBDAT 1 LAST LAST\r\n",
		"EHLO x\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n",
		"EHLO x\rMAIL FROM:<a@x>\r",
		"QUIT\r\nEHLO after quit\r\n",
		"EHLO x\r\nXCLIENT ADDR=203.0.113.9 PORT=25 DESTADDR=IPV6:2001:db8::1 DESTPORT=[UNAVAILABLE]\r\nEHLO y\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\nx\r\n.\r\n",
		"XCLIENT ADDR=+41+42\r\nXCLIENT NAME=x\r\nXCLIENT ADDR\r\n",
	} {
		f.Add([]byte(seed))
	}
	cfg := testConfig()
	cfg.MaxMessageSize = 64 << 10
	cfg.ClientTimeout = 5 * time.Second
	cfg.AllowXClient = true
	ts := startServer(f, cfg, nullPolicy())
	f.Fuzz(func(t *testing.T, input []byte) {
		conn, err := net.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(8 * time.Second))
		r := bufio.NewReader(conn)
		banner, err := r.ReadString('\n')
		if err != nil || !bytes.HasPrefix([]byte(banner), []byte("220 ")) {
			t.Fatalf("banner %q: %v", banner, err)
		}
		// write and read at once: a server that answers while the client
		// is still writing must not deadlock the test
		werr := make(chan error, 1)
		go func() {
			_, err := conn.Write(input)
			if err == nil {
				err = conn.(*net.TCPConn).CloseWrite()
			}
			werr <- err
		}()
		for {
			line, err := r.ReadSlice('\n')
			if err == io.EOF && len(line) == 0 {
				break
			}
			if err != nil {
				var ne net.Error
				if asNetErr(err, &ne) && ne.Timeout() {
					t.Fatalf("the server did not end the session after the client's EOF (input %q)", input)
				}
				if len(line) == 0 {
					break // reset by the server after a fatal reply
				}
				t.Fatalf("reply %q: %v", line, err)
			}
			if !wellFormed(line) {
				t.Fatalf("malformed reply %q to input %q", line, input)
			}
		}
		<-werr // a write may fail once the server has closed; that is fine
	})
}

// TestControlCharactersInCommands: a command holding a bare CR or another
// control character is a syntax error, and nothing of it is echoed.
func TestControlCharactersInCommands(t *testing.T) {
	ts := startServer(t, testConfig(), nullPolicy())
	c := testutil.Dial(t, ts.addr)
	c.Expect(t, "220 mx.test KumoMTA")
	const syntax = "501 Syntax error in command or arguments: control character in command"
	c.SendRaw("EHLO a\rb\r\n")
	c.Expect(t, syntax)
	c.Cmd(t, "EHLO client.example", "250-mx.test Aloha client.example")
	c.SendRaw("MAIL FROM:<a\x00b@x.example>\r\n")
	c.Expect(t, syntax)
	c.SendRaw("MAIL FROM:<a@x.example>\tSIZE=10\r\n")
	c.Expect(t, "250 OK a@x.example")
	c.SendRaw("RCPT TO:<b\x1b[0m@y.example>\r\n")
	c.Expect(t, syntax)
	c.Cmd(t, "QUIT", "221 So long")
}

// wellFormed reports whether line is "NNN CRLF", "NNN text CRLF" or
// "NNN-text CRLF" with a code from 200 to 599.
func wellFormed(line []byte) bool {
	if !bytes.HasSuffix(line, []byte("\r\n")) {
		return false
	}
	line = line[:len(line)-2]
	if len(line) < 3 || line[0] < '2' || line[0] > '5' || line[1] < '0' || line[1] > '9' || line[2] < '0' || line[2] > '9' {
		return false
	}
	if len(line) > 3 && line[3] != ' ' && line[3] != '-' {
		return false
	}
	return !bytes.ContainsAny(line, "\r\n")
}

func asNetErr(err error, target *net.Error) bool {
	ne, ok := err.(net.Error)
	if ok {
		*target = ne
	}
	return ok
}
