package testutil

import (
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

func TestSMTPConnAgainstBareSink(t *testing.T) {
	sink := StartBareSinkServer(t)
	c := Dial(t, sink.Addr())
	c.Expect(t, "220 ")
	lines := c.Cmd(t, "EHLO client.localhost", "250-")
	if len(lines) < 2 || !strings.HasPrefix(lines[len(lines)-1], "250 ") {
		t.Fatalf("EHLO reply not multi-line: %q", lines)
	}
	var chunking bool
	for _, l := range lines {
		chunking = chunking || l[4:] == "CHUNKING"
	}
	if !chunking {
		t.Fatalf("bare sink does not advertise CHUNKING: %q", lines)
	}

	c.Cmd(t, "MAIL FROM:<a@example.com>", "250")
	c.Cmd(t, "RCPT TO:<b@example.com>", "250")
	c.Cmd(t, "RCPT TO:<c@example.com>", "250")
	c.Cmd(t, "DATA", "354")
	c.SendRaw("Subject: x\r\n\r\nhello\r\n..dot\r\n.\r\n")
	c.Expect(t, "250")

	// BDAT in two chunks, pipelined.
	body := "Subject: y\r\n\r\nchunked\r\n"
	c.SendRaw("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n")
	c.Expect(t, "250")
	c.Expect(t, "250")
	c.SendRaw("BDAT 10\r\n" + body[:10])
	c.Expect(t, "250")
	c.SendRaw("BDAT " + strconv.Itoa(len(body)-10) + " LAST\r\n" + body[10:])
	c.Expect(t, "250")
	c.Cmd(t, "QUIT", "221")

	if got := sink.Messages.Load(); got != 2 {
		t.Errorf("Messages = %d, want 2", got)
	}
	if got := sink.Recipients.Load(); got != 3 {
		t.Errorf("Recipients = %d, want 3", got)
	}
	if got, want := sink.Bytes.Load(), int64(len("Subject: x\r\n\r\nhello\r\n.dot\r\n")+len(body)); got != want {
		t.Errorf("Bytes = %d, want %d", got, want)
	}
}

func TestStartBareSinkWithGoSMTPClient(t *testing.T) {
	addr, stop := StartBareSink(t)
	for i := 0; i < 3; i++ {
		c, err := smtp.Dial(addr)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.SendMail("a@example.com", []string{"b@example.com"}, strings.NewReader("Subject: z\r\n\r\nbody\r\n")); err != nil {
			t.Fatalf("SendMail %d: %v", i, err)
		}
		if err := c.Quit(); err != nil {
			t.Fatal(err)
		}
	}
	stop()
	stop() // idempotent
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Fatal("bare sink still accepts after stop")
	}
}

// scripted serves one connection, writing reply verbatim after the client
// connects, then keeps the connection open until the test ends.
func scripted(t *testing.T, reply string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { close(done); ln.Close() })
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		conn.Write([]byte(reply))
		<-done
	}()
	return ln.Addr().String()
}

func TestReadReply(t *testing.T) {
	cases := []struct {
		name, wire string
		code       int
		lines      []string
		errSub     string
	}{
		{"single", "220 ready\r\n", 220, []string{"220 ready"}, ""},
		{"bare code", "250\r\n", 250, []string{"250"}, ""},
		{"multi", "250-host\r\n250-PIPELINING\r\n250 8BITMIME\r\n", 250, []string{"250-host", "250-PIPELINING", "250 8BITMIME"}, ""},
		{"lf only", "421 bye\n", 421, []string{"421 bye"}, ""},
		{"code mismatch", "250-a\r\n251 b\r\n", 0, nil, "differs"},
		{"bad code", "abc\r\n", 0, nil, "malformed"},
		{"bad sep", "250+x\r\n", 0, nil, "separator"},
		{"short", "25\r\n", 0, nil, "malformed"},
		{"timeout", "250-a\r\n", 0, nil, "timeout"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := Dial(t, scripted(t, tc.wire))
			c.Timeout = 200 * time.Millisecond
			code, lines, err := c.ReadReply()
			if tc.errSub != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errSub) {
					t.Fatalf("err = %v, want one containing %q", err, tc.errSub)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if code != tc.code || strings.Join(lines, "|") != strings.Join(tc.lines, "|") {
				t.Fatalf("got %d %q, want %d %q", code, lines, tc.code, tc.lines)
			}
		})
	}
}

func TestReadReplyClosed(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if conn, err := ln.Accept(); err == nil {
			conn.Write([]byte("250-partial\r\n"))
			conn.Close()
		}
	}()
	c := Dial(t, ln.Addr().String())
	if _, lines, err := c.ReadReply(); err == nil {
		t.Fatalf("no error on a reply cut by EOF; lines %q", lines)
	}
}
