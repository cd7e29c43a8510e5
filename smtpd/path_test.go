package smtpd

import (
	"bufio"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	smtp "github.com/emersion/go-smtp"
)

// bareSession accepts everything: go-smtp's own parser is the only judge.
type bareSession struct{}

func (bareSession) Reset()                               {}
func (bareSession) Logout() error                        { return nil }
func (bareSession) Mail(string, *smtp.MailOptions) error { return nil }
func (bareSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (bareSession) Data(r io.Reader) error               { _, err := io.Copy(io.Discard, r); return err }

// goSMTPPaths runs a bare go-smtp server, the one smtpd is built on, and
// returns a function that tells whether go-smtp's parser takes a MAIL or
// RCPT argument (ok), or whether the argument says nothing about the path
// (known false: a refusal for an ESMTP parameter).
func goSMTPPaths(tb testing.TB) func(verb, arg string) (ok, known bool) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	gs := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return bareSession{}, nil }))
	gs.Domain = "bare.test"
	go gs.Serve(ln)
	tb.Cleanup(func() { gs.Close() })
	var conn net.Conn
	var rd *bufio.Reader
	// each exchange on a fresh connection when the last one broke: go-smtp
	// closes a connection after a few protocol errors
	readReply := func() (string, error) {
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		for {
			line, err := rd.ReadString('\n')
			if err != nil {
				return "", err
			}
			if len(line) < 4 || line[3] != '-' {
				return line, nil
			}
		}
	}
	send := func(line string) (string, error) {
		conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if _, err := conn.Write([]byte(line + "\r\n")); err != nil {
			return "", err
		}
		return readReply()
	}
	dial := func() error {
		if conn != nil {
			conn.Close()
		}
		var err error
		if conn, err = net.Dial("tcp", ln.Addr().String()); err != nil {
			return err
		}
		rd = bufio.NewReader(conn)
		if _, err := readReply(); err != nil {
			return err
		}
		_, err = send("EHLO x")
		return err
	}
	if err := dial(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	return func(verb, arg string) (bool, bool) {
		_, err := send("RSET")
		if err == nil && verb == "RCPT" {
			_, err = send("MAIL FROM:<a@b>")
		}
		r := ""
		if err == nil {
			r, err = send(verb + " " + arg)
		}
		if err != nil {
			if err := dial(); err != nil {
				panic(err)
			}
			return false, false
		}
		switch {
		case strings.HasPrefix(r, "250"):
			return true, true
		case strings.Contains(r, "Was expecting"):
			return false, true
		}
		return false, false
	}
}

var pathSeeds = []string{
	"FROM:<a@b>", "FROM:<>", "from: <a@b> SIZE=10", "FROM:a@b", "FROM:<a@b", "FROM:<@r1,@r2:a@b>",
	"FROM:<@r1>", "FROM:<\"a b\"@c>", "FROM:<\"\"@c>", "FROM:<a@>", "FROM:<@b>", "FROM:<a(b@c>",
	"FROM:", "FROM", "TO:<a@b>", "FROM:<\"a\\\"@b>", "FROM:<a@b>x", "FROM:<a@b\t>", "FROMX<a@b>",
}

// FuzzPathSyntax: pathSyntaxOK, which the command loop checks before
// forwarding MAIL and RCPT, agrees with go-smtp's own parser, so that
// go-smtp never answers a path itself.
func FuzzPathSyntax(f *testing.F) {
	for _, s := range pathSeeds {
		f.Add(s, false)
		f.Add("TO:"+strings.TrimPrefix(strings.TrimPrefix(s, "FROM:"), "from:"), true)
	}
	f.Add("TO:<postmaster>", true)
	f.Add("TO:<PostMaster> NOTIFY=NEVER", true)
	goParses := goSMTPPaths(f)
	f.Fuzz(func(t *testing.T, arg string, rcpt bool) {
		if strings.ContainsAny(arg, "\r\n") || hasControl([]byte(arg)) || strings.TrimSpace(arg) != arg {
			return // the command loop refuses these lines before any path check
		}
		verb, kw := "MAIL", "FROM:"
		if rcpt {
			verb, kw = "RCPT", "TO:"
		}
		ok, known := goParses(verb, arg)
		if !known {
			return
		}
		if got := pathSyntaxOK([]byte(arg), kw, rcpt); got != ok {
			t.Fatalf("%s %q: pathSyntaxOK %v, go-smtp %v", verb, arg, got, ok)
		}
	})
}

// TestSeamPassesGoSMTPRefusals: what go-smtp refuses by itself, without
// calling the session (an ESMTP parameter it does not take), reaches the
// client as go-smtp wrote it, and the session stays in step: the next
// commands get KumoMTA's replies.
func TestSeamPassesGoSMTPRefusals(t *testing.T) {
	ts := startServer(t, testConfig(), nullPolicy())
	c := greet(t, ts.addr)
	c.Cmd(t, "MAIL FROM:<a@x.com> BODY=BINARYMIME", "504 5.5.4 ")
	c.Cmd(t, "MAIL FROM:<a@x.com>", "250 OK a@x.com")
	c.Cmd(t, "RCPT TO:<b@y.com> FROB=1", "500 5.5.4 ")
	c.Cmd(t, "RCPT TO:<b@y.com>", "250 OK b@y.com")
	c.Cmd(t, "DATA", "354 Send body; end with CRLF.CRLF")
	c.SendRaw("Subject: x\r\n\r\nhi\r\n.\r\n")
	c.Expect(t, "250 OK ids=")
	c.Cmd(t, "RSET", "250 Reset state")
	c.Cmd(t, "QUIT", "221 So long, and thanks for all the fish!")
}
