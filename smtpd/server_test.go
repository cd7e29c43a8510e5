package smtpd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/smtp"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/logrecord"
	"github.com/kumogo/kumogo/internal/memguard"
	"github.com/kumogo/kumogo/internal/message"
	"github.com/kumogo/kumogo/internal/smtpreply"
	"github.com/kumogo/kumogo/internal/testutil"
)

var idsRe = regexp.MustCompile(`^250 OK ids=[0-9a-f]{32}$`)

func greet(t *testing.T, addr string) *testutil.SMTPConn {
	t.Helper()
	c := testutil.Dial(t, addr)
	c.Expect(t, "220 mx.test KumoMTA")
	c.Cmd(t, "EHLO client.example", "250-mx.test Aloha client.example")
	return c
}

func sendMessage(t *testing.T, c *testutil.SMTPConn, from, to, body string) string {
	t.Helper()
	c.Cmd(t, "MAIL FROM:<"+from+">", "250 OK "+from)
	c.Cmd(t, "RCPT TO:<"+to+">", "250 OK "+to)
	c.Cmd(t, "DATA", "354 Send body; end with CRLF.CRLF")
	c.SendRaw(body + ".\r\n")
	_, lines, err := c.ReadReply()
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(lines, "\n")
}

func TestBannerAndEhlo(t *testing.T) {
	ts := startServer(t, testConfig(), nullPolicy())
	c := testutil.Dial(t, ts.addr)
	c.Expect(t, "220 mx.test KumoMTA")
	c.Send("EHLO client.example")
	_, lines, err := c.ReadReply()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"250-mx.test Aloha client.example", "250-PIPELINING", "250-ENHANCEDSTATUSCODES",
		"250-8BITMIME", "250-SMTPUTF8", "250-CHUNKING", "250 STARTTLS"}
	if strings.Join(lines, "|") != strings.Join(want, "|") {
		t.Fatalf("EHLO reply:\n got %q\nwant %q", lines, want)
	}
	c.Cmd(t, "HELO other.example", "250 Hello other.example!")
	c.Cmd(t, "NOOP", "250 the goggles do nothing")
	c.Cmd(t, "RSET", "250 Reset state")
	c.Cmd(t, "VRFY someone", "502 5.5.1 Command unimplemented")
	c.Cmd(t, "HELP", "502 5.5.1 Command unimplemented")
	c.Cmd(t, "FOO bar", "502 5.5.1 Command unimplemented")
	c.Cmd(t, "QUIT", "221 So long, and thanks for all the fish!")
}

func TestTransactionToNullQueue(t *testing.T) {
	// a message to queue "null" is recycled after reception: keep copies
	var gotID, gotData, gotFrom, gotEhlo string
	var gotMeta map[string]any
	p := &fakePolicy{received: func(m *message.Message) error {
		m.SetMeta("queue", "null")
		gotID = m.ID()
		gotData = string(m.Data())
		gotFrom, _ = m.MetaString("received_from")
		gotEhlo, _ = m.MetaString("ehlo_domain")
		gotMeta = maps.Clone(m.MetaMap())
		return nil
	}}
	ts := startServer(t, testConfig(), p)
	c := greet(t, ts.addr)
	resp := sendMessage(t, c, "sender@example.com", "recip@example.com", "Subject: hi\r\n\r\nhello\r\n..dot\r\n")
	if !idsRe.MatchString(resp) {
		t.Fatalf("DATA reply %q", resp)
	}
	if gotID == "" {
		t.Fatal("message_received not called")
	}
	if !strings.HasPrefix(gotData, "Received: from client.example (127.0.0.1)\r\n  by mx.test (KumoMTA 127.0.0.1)\r\n  with ESMTP id "+gotID+" for recip@example.com;") {
		t.Fatalf("Received header: %q", gotData)
	}
	if !strings.HasSuffix(gotData, "Subject: hi\r\n\r\nhello\r\n.dot\r\n") {
		t.Fatalf("body not dot-unstuffed: %q", gotData)
	}
	if !strings.HasPrefix(gotFrom, "127.0.0.1:") {
		t.Fatalf("conn meta not copied: %v", gotMeta)
	}
	if gotEhlo != "client.example" {
		t.Fatalf("ehlo_domain meta %q", gotEhlo)
	}
	recs := ts.recs.ByType(logrecord.Reception)
	if len(recs) != 1 || recs[0].Queue != "null" || recs[0].ID != gotID || recs[0].Sender != "sender@example.com" ||
		len(recs[0].Recipient) != 1 || recs[0].Recipient[0] != "recip@example.com" || recs[0].Response.Code != 250 {
		t.Fatalf("reception records: %+v", recs)
	}
	// the connection is reusable
	resp = sendMessage(t, c, "", "r2@example.com", "x\r\n")
	if !idsRe.MatchString(resp) {
		t.Fatalf("second DATA reply %q", resp)
	}
}

func TestOnePerRecipientAndBatchByDomain(t *testing.T) {
	var mu sync.Mutex
	var batches [][]string
	p := &fakePolicy{received: func(m *message.Message) error {
		m.SetMeta("queue", "null")
		var l []string
		for _, r := range m.Recipients() {
			l = append(l, r.String())
		}
		// each split message carries exactly its own Received header
		d := string(m.Data())
		if strings.Count(d, "Received: ") != 1 || !strings.Contains(d, " for "+l[0]+";") || !strings.HasSuffix(d, "\r\nhi\r\n") {
			t.Errorf("split message data %q", d)
		}
		mu.Lock()
		batches = append(batches, l)
		mu.Unlock()
		return nil
	}}
	for _, mode := range []string{"BifurcateAlways", "BatchByDomain"} {
		batches = nil
		cfg := testConfig()
		cfg.BatchHandling = mode
		ts := startServer(t, cfg, p)
		c := greet(t, ts.addr)
		c.Cmd(t, "MAIL FROM:<s@x.com>", "250")
		for _, r := range []string{"a@one.com", "b@two.com", "c@ONE.com"} {
			c.Cmd(t, "RCPT TO:<"+r+">", "250 OK "+r)
		}
		c.Cmd(t, "DATA", "354")
		c.SendRaw("hi\r\n.\r\n")
		lines := c.Expect(t, "250 OK ids=")
		n := len(strings.Fields(strings.TrimPrefix(lines[0], "250 OK ids=")))
		want := 3
		if mode == "BatchByDomain" {
			want = 2
		}
		if n != want || len(batches) != want {
			t.Fatalf("%s: %d ids, batches %v", mode, n, batches)
		}
	}
}

func TestPipelining(t *testing.T) {
	ts := startServer(t, testConfig(), nullPolicy())
	c := greet(t, ts.addr)
	c.SendRaw("MAIL FROM:<a@x.com>\r\nRCPT TO:<b@y.com>\r\nRCPT TO:<c@y.com>\r\nDATA\r\n")
	c.Expect(t, "250 OK a@x.com")
	c.Expect(t, "250 OK b@y.com")
	c.Expect(t, "250 OK c@y.com")
	c.Expect(t, "354 Send body")
	// body, then the next transaction pipelined right behind the dot
	c.SendRaw("Subject: p\r\n\r\nbody\r\n.\r\nRSET\r\nMAIL FROM:<d@x.com>\r\nNOOP\r\nQUIT\r\n")
	c.Expect(t, "250 OK ids=")
	c.Expect(t, "250 Reset state")
	c.Expect(t, "250 OK d@x.com")
	c.Expect(t, "250 the goggles do nothing")
	c.Expect(t, "221 So long")
	if got := len(ts.recs.ByType(logrecord.Reception)); got != 2 {
		t.Fatalf("want 2 receptions, got %d", got)
	}
}

func TestSequenceErrors(t *testing.T) {
	ts := startServer(t, testConfig(), nullPolicy())
	c := testutil.Dial(t, ts.addr)
	c.Expect(t, "220 ")
	c.Cmd(t, "EHLO", "501 Syntax error in command or arguments")
	c.Cmd(t, "EHLO c.example", "250-")
	c.Cmd(t, "RCPT TO:<a@b.com>", "503 5.5.0 MAIL FROM must be issued first")
	c.Cmd(t, "DATA", "503 5.5.0 RCPT TO must be issued first")
	c.Cmd(t, "MAIL FROM:<a@b.com>", "250 OK a@b.com")
	c.Cmd(t, "MAIL FROM:<a@b.com>", "503 5.5.0 MAIL FROM already issued; you must RSET first")
	c.Cmd(t, "DATA", "503 5.5.0 RCPT TO must be issued first")
	c.Cmd(t, "RCPT TO:<sender@example.com:2025>", "501 5.1.3 Invalid recipient address syntax")
	c.Cmd(t, "RCPT TO:<>", "501 5.1.3 Invalid recipient address syntax")
	c.Cmd(t, "RSET", "250 Reset state")
	c.Cmd(t, "MAIL FROM:<not an address>", "501 5.1.7 Invalid sender address syntax")
	rej := ts.recs.ByType(logrecord.Rejection)
	if len(rej) < 6 {
		t.Fatalf("want a Rejection record per 4xx/5xx reply, got %d", len(rej))
	}
	if rej[1].Response.Code != 503 || rej[1].Response.Enhanced == nil || rej[1].Response.Enhanced.Detail != 0 ||
		rej[1].Response.Command != "RCPT TO:<a@b.com>\r\n" || rej[1].Response.Content != "MAIL FROM must be issued first" {
		t.Fatalf("rejection record: %+v", rej[1])
	}
}

func TestRelayDenied(t *testing.T) {
	cfg := testConfig()
	cfg.RelayHosts = nil
	ts := startServer(t, cfg, nullPolicy())
	c := greet(t, ts.addr)
	c.Cmd(t, "MAIL FROM:<a@x.com>", "250")
	lines := c.Cmd(t, "RCPT TO:<b@y.com>", "550 5.7.1 relaying not permitted for 127.0.0.1:")
	_ = lines

	// a listener domain with relay_to lets the domain in
	p := nullPolicy()
	p.listenerDom = func(d string) (*config.ListenerDomain, error) {
		if d == "open.example" {
			return &config.ListenerDomain{RelayTo: true}, nil
		}
		return nil, nil
	}
	ts2 := startServer(t, cfg, p)
	c2 := greet(t, ts2.addr)
	c2.Cmd(t, "MAIL FROM:<a@x.com>", "250")
	c2.Cmd(t, "RCPT TO:<b@y.com>", "550 5.7.1 relaying not permitted")
	c2.Cmd(t, "RCPT TO:<b@OPEN.example>", "250 OK b@OPEN.example")
}

func TestInvalidUTF8AndLongLines(t *testing.T) {
	ts := startServer(t, testConfig(), nullPolicy())
	c := greet(t, ts.addr)
	c.SendRaw("\x80\xfe\xff garbage\r\n")
	c.Expect(t, "501 5.5.2 Invalid UTF-8 in command")
	c.Cmd(t, "NOOP", "250 the goggles do nothing")
	c.Cmd(t, "NOOP "+strings.Repeat("x", 998), "500 5.2.3 line too long")
	c.Cmd(t, "NOOP "+strings.Repeat("x", 5000), "500 5.2.3 line too long")
	c.Cmd(t, "NOOP", "250 the goggles do nothing")
	// DATA with a 999 character line
	c.Cmd(t, "MAIL FROM:<a@x.com>", "250")
	c.Cmd(t, "RCPT TO:<b@y.com>", "250")
	c.Cmd(t, "DATA", "354")
	c.SendRaw("ok line\r\n" + strings.Repeat("y", 999) + "\r\n.\r\n")
	c.Expect(t, "500 5.2.3 line too long")
	// 998 is fine
	c.Cmd(t, "MAIL FROM:<a@x.com>", "250")
	c.Cmd(t, "RCPT TO:<b@y.com>", "250")
	c.Cmd(t, "DATA", "354")
	c.SendRaw(strings.Repeat("y", 998) + "\r\n.\r\n")
	c.Expect(t, "250 OK ids=")
}

func TestBareLineEndings(t *testing.T) {
	for _, mode := range []string{"Deny", "Allow", "Fix"} {
		var data string
		p := &fakePolicy{received: func(m *message.Message) error {
			m.SetMeta("queue", "null")
			data = string(m.Data())
			return nil
		}}
		cfg := testConfig()
		cfg.InvalidLineEndings = mode
		ts := startServer(t, cfg, p)
		c := greet(t, ts.addr)
		resp := sendMessage(t, c, "a@x.com", "b@y.com", "one\nbare\r\n")
		switch mode {
		case "Deny":
			if resp != "552 5.6.0 message data must use CRLF for line endings" {
				t.Fatalf("Deny: %q", resp)
			}
		case "Allow":
			if !idsRe.MatchString(resp) || !strings.HasSuffix(data, "one\nbare\r\n") {
				t.Fatalf("Allow: %q %q", resp, data)
			}
		case "Fix":
			if !idsRe.MatchString(resp) || !strings.HasSuffix(data, "\r\none\r\nbare\r\n") {
				t.Fatalf("Fix: %q %q", resp, data)
			}
		}
	}
}

func TestSmugglingTerminatorIgnored(t *testing.T) {
	// "\n.\r\n" is not an end of data; the smuggled MAIL stays in the body.
	var data string
	p := &fakePolicy{received: func(m *message.Message) error {
		m.SetMeta("queue", "null")
		data = string(m.Data())
		return nil
	}}
	cfg := testConfig()
	cfg.InvalidLineEndings = "Allow"
	ts := startServer(t, cfg, p)
	c := greet(t, ts.addr)
	resp := sendMessage(t, c, "a@x.com", "b@y.com", "x\n.\r\nMAIL FROM:<evil@x.com>\r\n")
	if !idsRe.MatchString(resp) || !strings.Contains(data, "MAIL FROM:<evil@x.com>") {
		t.Fatalf("%q %q", resp, data)
	}
	c.Cmd(t, "NOOP", "250 the goggles")
}

func TestLimits(t *testing.T) {
	cfg := testConfig()
	cfg.MaxMessageSize = 1000
	cfg.MaxRecipientsPerMessage = 2
	cfg.MaxMessagesPerConnection = 3
	ts := startServer(t, cfg, nullPolicy())
	c := greet(t, ts.addr)
	c.Cmd(t, "MAIL FROM:<a@x.com>", "250")
	c.Cmd(t, "RCPT TO:<1@y.com>", "250")
	c.Cmd(t, "RCPT TO:<2@y.com>", "250")
	c.Cmd(t, "RCPT TO:<3@y.com>", "452 4.5.3 too many recipients")
	c.Cmd(t, "DATA", "354")
	c.SendRaw(strings.Repeat("z", 70) + "\r\n")
	for i := 0; i < 20; i++ {
		c.SendRaw(strings.Repeat("z", 70) + "\r\n")
	}
	c.SendRaw(".\r\n")
	c.Expect(t, "552 5.3.4 message too big")
	c.Cmd(t, "MAIL FROM:<a@x.com>", "250")
	c.Cmd(t, "RCPT TO:<4@y.com>", "250")
	c.Cmd(t, "RCPT TO:<5@y.com>", "452 4.5.3 too many recipients on this connection")
	c.Cmd(t, "RSET", "250")
	c.Cmd(t, "MAIL FROM:<a@x.com>", "250")
	c.Cmd(t, "RCPT TO:<6@y.com>", "421 4.5.3 mx.test too many recipients on this connection")
	if _, _, err := c.ReadReply(); err == nil {
		t.Fatal("connection should be closed after 421")
	}
}

func TestMaxConnections(t *testing.T) {
	cfg := testConfig()
	cfg.MaxConnections = 2
	ts := startServer(t, cfg, nullPolicy())
	a := testutil.Dial(t, ts.addr)
	a.Expect(t, "220")
	b := testutil.Dial(t, ts.addr)
	b.Expect(t, "220")
	c := testutil.Dial(t, ts.addr)
	c.Expect(t, "421 4.3.2 mx.test too many concurrent sessions. Try later")
	a.Cmd(t, "QUIT", "221")
	a.Close()
	deadline := time.Now().Add(5 * time.Second)
	for ts.srv.ActiveConnections() > 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	d := testutil.Dial(t, ts.addr)
	d.Expect(t, "220 mx.test")
}

func TestPolicyRejectAndErrors(t *testing.T) {
	p := nullPolicy()
	p.mail = func(a message.Address) error {
		switch a.User {
		case "reject":
			return &smtpreply.Rejection{Code: 550, Text: "5.7.1 not you"}
		case "reject421":
			return &smtpreply.Rejection{Code: 421, Text: "4.7.0 go away"}
		case "boom":
			return errors.New("lua: policy.lua:3: attempt to index a nil value")
		case "multi":
			return &smtpreply.Rejection{Code: 550, Text: "first\nsecond"}
		case "force":
			return &smtpreply.Rejection{Code: 451, Text: "later", Mode: smtpreply.ForceDisconnect}
		case "follow":
			return &smtpreply.Rejection{Code: 550, Text: "no", Mode: smtpreply.FollowWith421}
		}
		return nil
	}
	ts := startServer(t, testConfig(), p)
	c := greet(t, ts.addr)
	c.Cmd(t, "MAIL FROM:<reject@x.com>", "550 5.7.1 not you")
	c.Cmd(t, "MAIL FROM:<multi@x.com>", "550-first\n550 second")
	c.Cmd(t, "MAIL FROM:<ok@x.com>", "250 OK ok@x.com")
	c.Close()

	for _, tc := range []struct{ user, want string }{
		{"reject421", "421 4.7.0 go away"},
		{"boom", "421 4.3.0 mx.test technical difficulties"},
		{"force", "451 later"},
	} {
		c = greet(t, ts.addr)
		c.Cmd(t, "MAIL FROM:<"+tc.user+"@x.com>", tc.want)
		if _, _, err := c.ReadReply(); err == nil {
			t.Fatalf("%s: connection should be closed", tc.user)
		}
	}
	c = greet(t, ts.addr)
	c.Cmd(t, "MAIL FROM:<follow@x.com>", "550 no")
	c.Expect(t, "421 mx.test disconnecting due to previous error")
	// the daemon keeps serving
	c = greet(t, ts.addr)
	resp := sendMessage(t, c, "ok@x.com", "r@y.com", "hi\r\n")
	if !idsRe.MatchString(resp) {
		t.Fatal(resp)
	}
}

func TestDataEventsRejectWholeTransaction(t *testing.T) {
	calls := 0
	p := &fakePolicy{received: func(m *message.Message) error {
		calls++
		if m.Recipients()[0].User == "bad" {
			return &smtpreply.Rejection{Code: 550, Text: "5.7.1 bad recipient content"}
		}
		m.SetMeta("queue", "null")
		return nil
	}}
	ts := startServer(t, testConfig(), p)
	c := greet(t, ts.addr)
	c.Cmd(t, "MAIL FROM:<a@x.com>", "250")
	c.Cmd(t, "RCPT TO:<good@y.com>", "250")
	c.Cmd(t, "RCPT TO:<bad@y.com>", "250")
	c.Cmd(t, "DATA", "354")
	c.SendRaw("x\r\n.\r\n")
	c.Expect(t, "550 5.7.1 bad recipient content")
	if n := len(ts.recs.ByType(logrecord.Reception)); n != 0 {
		t.Fatalf("no message may be accepted, got %d receptions", n)
	}
}

func TestNonNullQueueRefusedWithoutQueue(t *testing.T) {
	p := &fakePolicy{received: func(m *message.Message) error { return nil }}
	ts := startServer(t, testConfig(), p)
	c := greet(t, ts.addr)
	resp := sendMessage(t, c, "a@x.com", "b@y.com", "x\r\n")
	if !strings.HasPrefix(resp, "451 4.3.0 ") {
		t.Fatalf("non-null queue must not be acknowledged: %q", resp)
	}
}

func TestBDAT(t *testing.T) {
	var data string
	p := &fakePolicy{received: func(m *message.Message) error {
		m.SetMeta("queue", "null")
		data = string(m.Data())
		return nil
	}}
	ts := startServer(t, testConfig(), p)
	c := greet(t, ts.addr)
	c.Cmd(t, "BDAT 5", "503 5.5.0 RCPT TO must be issued first")
	c.SendRaw("abcde")
	c.Cmd(t, "NOOP", "250 the goggles")
	c.Cmd(t, "MAIL FROM:<a@x.com>", "250")
	c.Cmd(t, "RCPT TO:<b@y.com>", "250")
	c.SendRaw("BDAT 9\r\nSubject: ")
	c.Expect(t, "250 2.0.0 Continue")
	c.SendRaw("BDAT 12 LAST\r\nb\r\n\r\n.body\r\nQUIT\r\n")
	c.Expect(t, "250 OK ids=")
	c.Expect(t, "221 So long")
	if !strings.HasSuffix(data, "Subject: b\r\n\r\n.body\r\n") {
		t.Fatalf("BDAT data %q", data)
	}
}

// TestRSETDuringBDAT: RSET (or EHLO) between chunks aborts the transaction and
// nothing else: the session goes on, the next transaction is received
// whole, and nothing of the aborted chunks leaks into it. (go-smtp lets
// the aborted body's reader return while the session carries on, so this
// also runs the abort concurrently with the next commands under -race.)
func TestRSETDuringBDAT(t *testing.T) {
	var data []string
	var mu sync.Mutex
	p := &fakePolicy{received: func(m *message.Message) error {
		m.SetMeta("queue", "null")
		mu.Lock()
		data = append(data, string(m.Data()))
		mu.Unlock()
		return nil
	}}
	ts := startServer(t, testConfig(), p)
	c := greet(t, ts.addr)
	for i := 0; i < 20; i++ {
		c.Cmd(t, "MAIL FROM:<a@x.com>", "250")
		c.Cmd(t, "RCPT TO:<b@y.com>", "250")
		c.SendRaw("BDAT 7\r\naborted")
		c.Expect(t, "250 2.0.0 Continue")
		if i%2 == 0 {
			c.Cmd(t, "RSET", "250 Reset state")
		} else {
			c.Cmd(t, "EHLO again.example", "250-mx.test Aloha again.example") // EHLO resets too
		}
		c.Cmd(t, "MAIL FROM:<a@x.com>", "250")
		c.Cmd(t, "RCPT TO:<b@y.com>", "250")
		c.SendRaw("BDAT 17 LAST\r\nSubject: kept\r\n\r\n")
		c.Expect(t, "250 OK ids=")
	}
	c.Cmd(t, "QUIT", "221 So long")
	mu.Lock()
	defer mu.Unlock()
	if len(data) != 20 {
		t.Fatalf("%d messages received, want 20", len(data))
	}
	for _, d := range data {
		if strings.Contains(d, "aborted") || !strings.HasSuffix(d, "Subject: kept\r\n\r\n") {
			t.Fatalf("message after an aborted BDAT: %q", d)
		}
	}
}

func TestEhloHookAndRewrite(t *testing.T) {
	p := nullPolicy()
	p.ehlo = func(d string, exts []string) ([]string, error) {
		if d == "bad.example" {
			return nil, &smtpreply.Rejection{Code: 550, Text: "5.7.1 no thanks"}
		}
		return []string{"PIPELINING", "X-CUSTOM"}, nil
	}
	p.rewrite = func(code int, text, cmd string) (int, string, error) {
		if strings.HasPrefix(text, "OK ids=") {
			return code, "super fantastic! " + text, nil
		}
		return code, text, nil
	}
	ts := startServer(t, testConfig(), p)
	c := testutil.Dial(t, ts.addr)
	c.Expect(t, "220")
	c.Cmd(t, "EHLO bad.example", "550 5.7.1 no thanks")
	c.Cmd(t, "MAIL FROM:<a@x.com>", "503 5.5.1")
	c.Cmd(t, "EHLO good.example", "250-mx.test Aloha good.example\n250-PIPELINING\n250 X-CUSTOM")
	resp := sendMessage(t, c, "a@x.com", "b@y.com", "x\r\n")
	if !strings.HasPrefix(resp, "250 super fantastic! OK ids=") {
		t.Fatal(resp)
	}
}

func TestConnectionAcceptedReject(t *testing.T) {
	p := nullPolicy()
	p.connAccepted = func(cm *message.ConnMeta) error {
		return &smtpreply.Rejection{Code: 550, Text: "5.7.1 you are not welcome"}
	}
	ts := startServer(t, testConfig(), p)
	c := testutil.Dial(t, ts.addr)
	c.Expect(t, "550 5.7.1 you are not welcome")
	if _, _, err := c.ReadReply(); err == nil {
		t.Fatal("session should end")
	}
}

func TestStartTLSAndAuthPlain(t *testing.T) {
	var authed, sawTLSMeta bool
	p := nullPolicy()
	p.auth = func(authz, authc, pass string) (bool, error) {
		return authc == "daniel" && pass == "tiger" && authz == "daniel", nil
	}
	p.received = func(m *message.Message) error {
		m.SetMeta("queue", "null")
		a, _ := m.MetaString("authn_id")
		authed = a == "daniel"
		v, _ := m.MetaString("tls_protocol_version")
		sawTLSMeta = strings.HasPrefix(v, "TLS")
		if !strings.Contains(string(m.Data()), "with ESMTPSA (TLS") {
			t.Errorf("Received header lacks ESMTPSA: %q", m.Data())
		}
		return nil
	}
	ts := startServer(t, testConfig(), p)

	// raw checks first: AUTH before TLS is refused
	c := greet(t, ts.addr)
	c.Cmd(t, "AUTH PLAIN AGRhbmllbAB0aWdlcg==", "524 5.7.11")
	c.Close()

	dialTLS := func() *smtp.Client {
		cl, err := smtp.Dial(ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		if err := cl.Hello("client.example"); err != nil {
			t.Fatal(err)
		}
		if ok, _ := cl.Extension("STARTTLS"); !ok {
			t.Fatal("STARTTLS not offered")
		}
		if err := cl.StartTLS(&tls.Config{InsecureSkipVerify: true, ServerName: "mx.test"}); err != nil {
			t.Fatal(err)
		}
		if ok, params := cl.Extension("AUTH"); !ok || params != "PLAIN" {
			t.Fatalf("AUTH PLAIN not offered after TLS: %v %q", ok, params)
		}
		return cl
	}
	bad := dialTLS()
	if err := bad.Auth(smtp.PlainAuth("", "daniel", "bogus", "127.0.0.1")); err == nil || !strings.Contains(err.Error(), "535") {
		t.Fatalf("bad password must fail with 535, got %v", err)
	}
	bad.Close()
	cl := dialTLS()
	defer cl.Close()
	if err := cl.Auth(smtp.PlainAuth("", "daniel", "tiger", "127.0.0.1")); err != nil {
		t.Fatalf("auth: %v", err)
	}
	clientSend(t, cl, "tls")
	cl.Quit()
	if !authed || !sawTLSMeta {
		t.Fatalf("authed=%v tlsMeta=%v", authed, sawTLSMeta)
	}
	recs := ts.recs.ByType(logrecord.Reception)
	if len(recs) != 1 || !strings.HasPrefix(recs[0].TLSProtocolVersion, "TLS") || recs[0].TLSCipher == "" {
		t.Fatalf("reception over TLS: %+v", recs)
	}
}

func TestClientTimeout(t *testing.T) {
	cfg := testConfig()
	cfg.ClientTimeout = 300 * time.Millisecond
	ts := startServer(t, cfg, nullPolicy())
	c := greet(t, ts.addr)
	c.Expect(t, "421 4.3.2 mx.test idle too long")
}

func TestDisconnectMidDataAndNoLeak(t *testing.T) {
	ts := startServer(t, testConfig(), nullPolicy())
	base := runtime.NumGoroutine()
	for i := 0; i < 50; i++ {
		c := greet(t, ts.addr)
		c.Cmd(t, "MAIL FROM:<a@x.com>", "250")
		c.Cmd(t, "RCPT TO:<b@y.com>", "250")
		c.Cmd(t, "DATA", "354")
		c.SendRaw("partial body without end")
		c.Close()
	}
	// hang up between BDAT chunks and in the middle of one: go-smtp's body
	// goroutine must end too
	for i := 0; i < 50; i++ {
		c := greet(t, ts.addr)
		c.Cmd(t, "MAIL FROM:<a@x.com>", "250")
		c.Cmd(t, "RCPT TO:<b@y.com>", "250")
		c.SendRaw("BDAT 4\r\nabcd")
		c.Expect(t, "250 2.0.0 Continue")
		if i%2 == 1 {
			c.SendRaw("BDAT 100\r\nonly part of it")
		}
		c.Close()
	}
	// garbage pipelined at speed, then hang up
	for i := 0; i < 50; i++ {
		conn, err := net.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		conn.Write([]byte("EHLO x\r\nMAIL FROM:<>\r\n\x00\x01\x02\r\nRCPT TO:<a@b>\r\nDATA\r\nBDAT zz\r\n" + strings.Repeat("A", 3000) + "\r\n"))
		conn.Close()
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if ts.srv.ActiveConnections() == 0 && runtime.NumGoroutine() <= base+2 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := ts.srv.ActiveConnections(); n != 0 {
		t.Fatalf("%d sessions still open", n)
	}
	if g := runtime.NumGoroutine(); g > base+2 {
		t.Fatalf("goroutine leak: %d goroutines, baseline %d", g, base)
	}
	c := greet(t, ts.addr)
	if resp := sendMessage(t, c, "a@x.com", "b@y.com", "x\r\n"); !idsRe.MatchString(resp) {
		t.Fatal(resp)
	}
}

func TestManyIdleConnections(t *testing.T) {
	// The race detector caps live goroutines at 8128, so this in-process
	// test holds 2,000 sessions; the end-to-end test holds 20,000.
	ts := startServer(t, testConfig(), nullPolicy())
	base := runtime.NumGoroutine()
	const n = 2000
	conns := make([]net.Conn, 0, n)
	for i := 0; i < n; i++ {
		c, err := net.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		conns = append(conns, c)
	}
	buf := make([]byte, 64)
	for i, c := range conns {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		nr, err := c.Read(buf)
		if err != nil || !strings.HasPrefix(string(buf[:nr]), "220 mx.test") {
			t.Fatalf("conn %d banner %q %v", i, buf[:nr], err)
		}
	}
	if got := ts.srv.ActiveConnections(); got != n {
		t.Fatalf("active %d want %d", got, n)
	}
	c := greet(t, ts.addr)
	if resp := sendMessage(t, c, "a@x.com", "b@y.com", "x\r\n"); !idsRe.MatchString(resp) {
		t.Fatal(resp)
	}
	c.Close()
	for _, c := range conns {
		c.Close()
	}
	deadline := time.Now().Add(20 * time.Second)
	for (ts.srv.ActiveConnections() > 0 || runtime.NumGoroutine() > base+2) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if ts.srv.ActiveConnections() != 0 || runtime.NumGoroutine() > base+2 {
		t.Fatalf("after close: %d active, %d goroutines (base %d)", ts.srv.ActiveConnections(), runtime.NumGoroutine(), base)
	}
}

func TestShutdownAnswersIdleSessions(t *testing.T) {
	cfg := testConfig()
	recs := &recLogger{}
	srv, err := New(cfg, Deps{Policy: nullPolicy(), Logger: recs})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve() }()
	c := greet(t, srv.Addr().String())
	ctx, cancel := contextWithTimeout(5 * time.Second)
	defer cancel()
	go srv.Shutdown(ctx)
	c.Expect(t, "421 4.3.2 mx.test shutting down")
	if err := <-done; err != nil {
		t.Fatalf("Serve after shutdown: %v", err)
	}
	if _, err := net.DialTimeout("tcp", srv.Addr().String(), time.Second); err == nil {
		t.Fatal("listener still accepting")
	}
}

// A session still in a transaction when the shutdown deadline passes is
// cut off; under -race this also checks that the shutdown goroutine does
// not touch session state.
func TestShutdownDeadlineClosesBusySessions(t *testing.T) {
	cfg := testConfig()
	srv, err := New(cfg, Deps{Policy: nullPolicy(), Logger: &recLogger{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve() }()
	c := greet(t, srv.Addr().String())
	c.Cmd(t, "MAIL FROM:<a@x.com>", "250 OK a@x.com")
	c.Cmd(t, "RCPT TO:<b@y.com>", "250 OK b@y.com")
	c.Cmd(t, "DATA", "354 Send body; end with CRLF.CRLF")
	c.SendRaw("Subject: half a body\r\n")
	ctx, cancel := contextWithTimeout(200 * time.Millisecond)
	defer cancel()
	if err := srv.Shutdown(ctx); err != context.DeadlineExceeded {
		t.Fatalf("Shutdown = %v, want the deadline", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve after shutdown: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after the shutdown deadline")
	}
	if code, lines, err := c.ReadReply(); err == nil {
		t.Fatalf("busy session still open after the shutdown deadline: %d %q", code, lines)
	}
}

func TestDataProcessingTimeout(t *testing.T) {
	p := &fakePolicy{receivedCtx: func(ctx context.Context, m *message.Message) error {
		<-ctx.Done() // a handler stuck in kumo.sleep
		return ctx.Err()
	}}
	cfg := testConfig()
	cfg.DataProcessingTimeout = 100 * time.Millisecond
	ts := startServer(t, cfg, p)
	c := greet(t, ts.addr)
	if resp := sendMessage(t, c, "a@x.com", "b@y.com", "x\r\n"); resp != "451 4.4.5 data_processing_timeout exceeded (rx)" {
		t.Fatal(resp)
	}
	c.Cmd(t, "NOOP", "250")
}

func TestEnqueueOrderAndFailures(t *testing.T) {
	p := &fakePolicy{received: func(m *message.Message) error {
		m.SetMeta("queue", "relay.example")
		return nil
	}}
	recs := &recLogger{}
	enq := &fakeEnqueuer{recs: recs}
	ts := startServerWith(t, testConfig(), p, enq, recs)
	c := greet(t, ts.addr)
	if resp := sendMessage(t, c, "a@x.com", "recip@example.com", "Subject: s\r\n\r\nx\r\n"); !idsRe.MatchString(resp) {
		t.Fatal(resp)
	}
	if fmt.Sprint(enq.events) != "[spool insert(receptions=1)]" {
		t.Fatalf("order %v", enq.events)
	}
	d := string(enq.msgs[0].Data())
	if !strings.HasPrefix(d, "X-KumoRef: eyJfQF8iOiJcXF8vIiwicmVjaXBpZW50IjoicmVjaXBAZXhhbXBsZS5jb20ifQ==\r\nReceived: ") {
		t.Fatalf("spooled data %q", d)
	}
	enq.events = nil
	enq.spoolErr = errors.New("disk on fire")
	if resp := sendMessage(t, c, "a@x.com", "b@y.com", "x\r\n"); resp != "421 4.3.2 mx.test the spool is not accepting writes. Try later" {
		t.Fatal(resp)
	}
	c = greet(t, ts.addr)
	enq.spoolErr, enq.events = nil, nil
	enq.insertErr = errors.New("queue closed")
	if resp := sendMessage(t, c, "a@x.com", "b@y.com", "x\r\n"); resp != "421 4.3.0 mx.test technical difficulties" {
		t.Fatal(resp)
	}
	if fmt.Sprint(enq.events) != "[spool insert(receptions=2) unspool]" {
		t.Fatalf("order %v", enq.events)
	}
	b := recs.ByType(logrecord.Bounce)
	if len(b) != 1 || b[0].Response.Code != 500 || !strings.HasPrefix(b[0].Response.Content, "KumoMTA internal: QueueManager::insert failed during reception: queue closed") {
		t.Fatalf("bounce records %+v", b)
	}

	// the queue's commit of a staged spool write failed in Insert: the
	// message is not durable, answered as a failed spool write
	c = greet(t, ts.addr)
	enq.events = nil
	enq.insertErr = fmt.Errorf("commit: %w", spoolFailure{})
	if resp := sendMessage(t, c, "a@x.com", "b@y.com", "x\r\n"); resp != "421 4.3.2 mx.test the spool is not accepting writes. Try later" {
		t.Fatal(resp)
	}
	if fmt.Sprint(enq.events) != "[spool insert(receptions=3) unspool]" {
		t.Fatalf("order %v", enq.events)
	}
}

// spoolFailure is an Insert error that says the spool failed, as the
// queue's SpoolError does.
type spoolFailure struct{}

func (spoolFailure) Error() string      { return "WAL sync: input/output error" }
func (spoolFailure) SpoolFailure() bool { return true }

func TestDiskTooFullAtBanner(t *testing.T) {
	ts := startServer(t, testConfig(), nullPolicy())
	full := true
	var mu sync.Mutex
	ts.srv.SetEnqueuer(ts.srv.deps.Enqueuer, func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		return !full, "below min_free_space"
	})
	c := testutil.Dial(t, ts.addr)
	c.Expect(t, "421 4.3.2 mx.test disk is too full. Try later")
	mu.Lock()
	full = false
	mu.Unlock()
	c = testutil.Dial(t, ts.addr)
	c.Expect(t, "220 mx.test KumoMTA")
}

// TestLoadSheddingAtBanner: over the memory limit new sessions get
// KumoMTA's load-shedding reply, not the storage one.
func TestLoadSheddingAtBanner(t *testing.T) {
	ts := startServer(t, testConfig(), nullPolicy())
	ts.srv.SetEnqueuer(ts.srv.deps.Enqueuer, func() (bool, string) { return false, memguard.LoadShedding })
	c := testutil.Dial(t, ts.addr)
	c.Expect(t, "421 4.3.2 mx.test load shedding. Try later")
}

func TestListenNetwork(t *testing.T) {
	for addr, want := range map[string]string{
		"0.0.0.0:25": "tcp4", "127.0.0.1:0": "tcp4", "[::]:25": "tcp6", "[::1]:2025": "tcp6", "localhost:25": "tcp",
	} {
		if got := Network(addr); got != want {
			t.Errorf("Network(%q) = %s, want %s", addr, got, want)
		}
	}
	if ListenAddr("0:2026") != "0.0.0.0:2026" {
		t.Fatal(ListenAddr("0:2026"))
	}
}
