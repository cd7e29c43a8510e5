package smtpd

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/message"
	"github.com/kumogo/kumogo/internal/testutil"
)

// readAll reads the server's lines until it closes the connection (or
// limit passes) and returns them.
func readAll(t *testing.T, conn net.Conn, r *bufio.Reader, limit time.Duration) []string {
	t.Helper()
	lines, err := readToEOF(conn, r, limit)
	if err != nil {
		t.Fatalf("no end of session within %v: %v (lines %q)", limit, err, lines)
	}
	return lines
}

func readToEOF(conn net.Conn, r *bufio.Reader, limit time.Duration) ([]string, error) {
	conn.SetReadDeadline(time.Now().Add(limit))
	var lines []string
	for {
		line, err := r.ReadString('\n')
		if line != "" {
			lines = append(lines, strings.TrimRight(line, "\r\n"))
		}
		if err == io.EOF {
			return lines, nil
		}
		if err != nil {
			return lines, err
		}
	}
}

// openTxn greets, opens a transaction and returns the connection with its
// reader positioned after the RCPT reply.
func openTxn(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	r := bufio.NewReader(conn)
	conn.Write([]byte("HELO x\r\nMAIL FROM:<a@x.example>\r\nRCPT TO:<b@y.example>\r\n"))
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	for i := 0; i < 4; i++ {
		if _, err := r.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
	}
	return conn, r
}

// TestStalledBody: a client that stops inside a DATA body or a BDAT chunk
// gets KumoMTA's idle reply and nothing else: no 554, no Go error text.
func TestStalledBody(t *testing.T) {
	cfg := testConfig()
	cfg.ClientTimeout = 300 * time.Millisecond
	ts := startServer(t, cfg, nullPolicy())
	for _, tc := range []struct{ name, send string }{
		{"DATA", "DATA\r\npartial"},
		{"BDAT", "BDAT 10\r\nabc"},
		{"BDAT after a chunk", "BDAT 3\r\nabcBDAT 10 LAST\r\nab"},
	} {
		conn, r := openTxn(t, ts.addr)
		conn.Write([]byte(tc.send))
		lines := readAll(t, conn, r, 5*time.Second)
		want := []string{"421 4.3.2 mx.test idle too long"}
		switch tc.name {
		case "DATA":
			want = append([]string{"354 Send body; end with CRLF.CRLF"}, want...)
		case "BDAT after a chunk":
			want = append([]string{"250 2.0.0 Continue"}, want...)
		}
		if strings.Join(lines, "|") != strings.Join(want, "|") {
			t.Fatalf("%s: got %q, want %q", tc.name, lines, want)
		}
	}
}

// TestSlowBodyIsCutOff: a client dripping a body, each byte well inside
// client_timeout, is cut off once the body has taken client_timeout plus
// one second per minBodyRate bytes, with a 421, in DATA and in BDAT.
func TestSlowBodyIsCutOff(t *testing.T) {
	cfg := testConfig()
	cfg.ClientTimeout = 600 * time.Millisecond
	ts := startServer(t, cfg, nullPolicy())
	for _, start := range []string{"DATA\r\n", "BDAT 1000 LAST\r\n"} {
		conn, r := openTxn(t, ts.addr)
		conn.Write([]byte(start))
		began := time.Now()
		done := make(chan []string, 1)
		go func() {
			lines, err := readToEOF(conn, r, 10*time.Second)
			if err != nil {
				lines = append(lines, err.Error())
			}
			done <- lines
		}()
		// one byte every 150 ms for at most 6 s (40 bytes)
		for i := 0; i < 40; i++ {
			if _, err := conn.Write([]byte("x")); err != nil {
				break
			}
			time.Sleep(150 * time.Millisecond)
			select {
			case lines := <-done:
				// (a reset may follow the 421: the client wrote after
				// the server closed)
				took := time.Since(began)
				if !slices.Contains(lines, "421 4.3.2 mx.test idle too long") || took > 3*time.Second {
					t.Fatalf("%q: %q after %v", start, lines, took)
				}
				goto next
			default:
			}
		}
		t.Fatalf("%q: a client dripping one byte per 150 ms was still connected after 6 s", start)
	next:
	}
	// a body sent at a normal pace is not affected
	c := greet(t, ts.addr)
	if resp := sendMessage(t, c, "a@x.example", "b@y.example", strings.Repeat("line of text\r\n", 5000)); !idsRe.MatchString(resp) {
		t.Fatal(resp)
	}
}

// TestRcptPostmaster: RCPT TO:<postmaster> (any case, no domain) is
// accepted even from a host that may not relay, goes through
// smtp_server_rcpt_to as user "postmaster" with an empty domain, and the
// message is received.
func TestRcptPostmaster(t *testing.T) {
	var seen []string
	var got []string
	p := nullPolicy()
	p.rcpt = func(a message.Address) error {
		seen = append(seen, a.User+"|"+a.Domain)
		return nil
	}
	p.received = func(m *message.Message) error {
		m.SetMeta("queue", "null")
		for _, r := range m.Recipients() {
			got = append(got, r.String())
		}
		return nil
	}
	cfg := testConfig()
	cfg.RelayHosts = config.MustCIDRList("10.9.9.9") // this client may not relay
	ts := startServer(t, cfg, p)
	c := greet(t, ts.addr)
	c.Cmd(t, "MAIL FROM:<a@x.example>", "250 OK a@x.example")
	c.Cmd(t, "RCPT TO:<b@y.example>", "550 5.7.1 relaying not permitted")
	c.Cmd(t, "RCPT TO:<postmaster>", "250 OK postmaster")
	c.Cmd(t, "RCPT TO:<PostMaster>", "250 OK postmaster")
	c.Cmd(t, "RCPT TO:<postmasterx>", "501 5.1.3 Invalid recipient address syntax")
	c.Cmd(t, "DATA", "354")
	c.SendRaw("Subject: x\r\n\r\nhi\r\n.\r\n")
	c.Expect(t, "250 OK ids=")
	if strings.Join(seen, ",") != "postmaster|,postmaster|" || strings.Join(got, ",") != "postmaster,postmaster" {
		t.Fatalf("rcpt_to saw %q, messages for %q", seen, got)
	}
}

// TestRewriteResponseCommand: smtp_server_rewrite_response gets the
// command in KumoMTA's canonical form ("DATA" for the client's "data"),
// and nil ("") for unknown commands and replies to no command.
func TestRewriteResponseCommand(t *testing.T) {
	var mu sync.Mutex
	var cmds []string
	p := nullPolicy()
	p.rewrite = func(code int, text, cmd string) (int, string, error) {
		mu.Lock()
		cmds = append(cmds, fmt.Sprintf("%d %s", code, cmd))
		mu.Unlock()
		return code, text, nil
	}
	cfg := testConfig()
	cfg.ClientTimeout = 500 * time.Millisecond
	ts := startServer(t, cfg, p)
	c := testutil.Dial(t, ts.addr)
	c.Expect(t, "220 ")
	c.Cmd(t, "ehlo client.example", "250-")
	c.Cmd(t, "mail from:<a@x.example>", "250 ")
	c.Cmd(t, "rcpt To:<b@y.example>", "250 ")
	c.Cmd(t, "data", "354 ")
	c.SendRaw("x\r\n.\r\n")
	c.Expect(t, "250 OK ids=")
	c.Cmd(t, "xyzzy", "502 ")
	c.Cmd(t, "noop", "250 ")
	c.Expect(t, "421 4.3.2 mx.test idle too long")
	mu.Lock()
	defer mu.Unlock()
	want := []string{"220 ", "250 EHLO client.example", "250 MAIL FROM:<a@x.example>", "250 RCPT TO:<b@y.example>",
		"354 DATA", "250 DATA", "502 ", "250 NOOP", "421 "}
	if strings.Join(cmds, "|") != strings.Join(want, "|") {
		t.Fatalf("commands given to smtp_server_rewrite_response:\n got %q\nwant %q", cmds, want)
	}
}

// TestAuthFailuresEndSession: the max_auth_failures-th failed AUTH (wrong
// password or malformed) is followed by a 421 and the connection closes;
// unset it is 3; negative, there is none.
func TestAuthFailuresEndSession(t *testing.T) {
	for _, max := range []int{0, 5, -1} {
		p := nullPolicy()
		p.auth = func(authz, authc, pass string) (bool, error) { return pass == "tiger", nil }
		cfg := testConfig()
		cfg.MaxAuthFailures = max
		ts := startServer(t, cfg, p)
		conn, err := net.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		r := bufio.NewReader(conn)
		expect := func(prefix string) {
			t.Helper()
			for {
				line, err := r.ReadString('\n')
				if err != nil {
					t.Fatalf("max %d: want %q: %v", max, prefix, err)
				}
				if len(line) > 3 && line[3] == '-' {
					continue
				}
				if !strings.HasPrefix(line, prefix) {
					t.Fatalf("max %d: got %q, want %q", max, line, prefix)
				}
				return
			}
		}
		expect("220 ")
		fmt.Fprintf(conn, "EHLO x\r\nSTARTTLS\r\n")
		expect("250 ")
		expect("220 ")
		tc := tls.Client(conn, &tls.Config{InsecureSkipVerify: true})
		r = bufio.NewReader(tc)
		fmt.Fprintf(tc, "EHLO x\r\n")
		expect("250 ")
		attempts := 8
		for i := 1; i <= attempts; i++ {
			if i%2 == 0 {
				fmt.Fprintf(tc, "AUTH PLAIN %s\r\n", "not base64!")
				expect("501 5.5.2")
			} else {
				fmt.Fprintf(tc, "AUTH PLAIN %s\r\n", base64.StdEncoding.EncodeToString([]byte("\x00daniel\x00guess")))
				expect("535 5.7.8 AUTH invalid")
			}
			if i == max || max == 0 && i == config.DefaultMaxAuthFailures {
				expect("421 4.7.0 mx.test too many failed authentication attempts")
				if _, err := r.ReadString('\n'); err == nil {
					t.Fatalf("max %d: the connection stayed open", max)
				}
				break
			}
		}
		if max < 0 || max > attempts {
			fmt.Fprintf(tc, "AUTH PLAIN %s\r\n", base64.StdEncoding.EncodeToString([]byte("\x00daniel\x00tiger")))
			expect("235 2.7.0 AUTH OK")
		}
	}
}

// TestStartTLSForgetsTransaction: STARTTLS inside a transaction (plain, or
// with a BDAT chunk open) forgets it: after TLS the old recipient is gone,
// and after a new EHLO a new transaction is received whole.
func TestStartTLSForgetsTransaction(t *testing.T) {
	var mu sync.Mutex
	var got []string
	p := nullPolicy()
	p.received = func(m *message.Message) error {
		m.SetMeta("queue", "null")
		mu.Lock()
		got = append(got, string(m.Data()))
		mu.Unlock()
		return nil
	}
	ts := startServer(t, testConfig(), p)
	for _, open := range []string{"", "BDAT 4\r\nopen"} {
		conn, r := openTxn(t, ts.addr)
		expect := func(prefix string) {
			t.Helper()
			for {
				line, err := r.ReadString('\n')
				if err != nil || !strings.HasPrefix(line, prefix[:3]) {
					t.Fatalf("%q: got %q (%v), want %q", open, line, err, prefix)
				}
				if line[3] == '-' {
					continue
				}
				if !strings.HasPrefix(line, prefix) {
					t.Fatalf("%q: got %q, want %q", open, line, prefix)
				}
				return
			}
		}
		if open != "" {
			fmt.Fprint(conn, open)
			expect("250 2.0.0 Continue")
		}
		fmt.Fprint(conn, "STARTTLS\r\n")
		expect("220 ")
		tc := tls.Client(conn, &tls.Config{InsecureSkipVerify: true})
		r = bufio.NewReader(tc)
		fmt.Fprint(tc, "RCPT TO:<c@y.example>\r\n")
		expect("503 5.5.0 MAIL FROM must be issued first")
		fmt.Fprint(tc, "DATA\r\n")
		expect("503 " + textRcptFirst)
		fmt.Fprint(tc, "MAIL FROM:<a@x.example>\r\n")
		expect("503 " + textEhloFirst)
		fmt.Fprint(tc, "EHLO again.example\r\n")
		expect("250 ")
		fmt.Fprint(tc, "MAIL FROM:<n@x.example>\r\nRCPT TO:<m@y.example>\r\nBDAT 9 LAST\r\nH: 1\r\n\r\nx")
		expect("250 OK n@x.example")
		expect("250 OK m@y.example")
		expect("250 OK ids=")
		fmt.Fprint(tc, "QUIT\r\n")
		expect("221 ")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 {
		t.Fatalf("%d messages", len(got))
	}
	for _, d := range got {
		if !strings.HasSuffix(d, "\r\nH: 1\r\n\r\nx") || strings.Contains(d, "open") || !strings.Contains(d, " for m@y.example;") {
			t.Fatalf("message %q", d)
		}
	}
}
