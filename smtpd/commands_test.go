package smtpd

import (
	"strings"
	"testing"

	"github.com/kumogo/kumogo/internal/logrecord"
	"github.com/kumogo/kumogo/internal/message"
	"github.com/kumogo/kumogo/internal/smtpreply"
)

// Command lines are kept as bytes in a per-session buffer; these checks
// pin the parsing that used to go through strings.
func TestCommandLineParsing(t *testing.T) {
	var got []string
	p := &fakePolicy{received: func(m *message.Message) error {
		got = append(got, string(m.Data()[strings.Index(string(m.Data()), "\r\n\r\n"):]))
		if len(got) == 2 {
			return &smtpreply.Rejection{Code: 550, Text: "5.7.1 not this one"}
		}
		m.SetMeta("queue", "null")
		return nil
	}}
	ts := startServer(t, testConfig(), p)
	c := greet(t, ts.addr)
	c.Cmd(t, "mail from:<a@x.com>", "250 OK a@x.com")
	c.Cmd(t, "Rcpt To:<b@y.com>", "250 OK b@y.com")
	for _, bad := range []string{"BDAT", "BDAT 3 LAST more", "BDAT 3 FIRST", "BDAT x", "BDAT -3", "BDAT 4294967296"} {
		c.Cmd(t, bad, "501 Syntax error in command or arguments")
	}
	c.Cmd(t, "DATA now", "501 Syntax error in command or arguments: DATA takes no arguments")
	c.Cmd(t, "FROBNICATE", "502 5.5.1 Command unimplemented")
	c.Cmd(t, "noop", "250 the goggles do nothing")
	c.SendRaw("bdat 5 \u00a0last\r\n\r\none")
	c.Expect(t, "250 OK ids=")
	// a rejected DATA: the Rejection record names the DATA line even
	// though the body was read in between
	c.Cmd(t, "MAIL FROM:<a@x.com>", "250")
	c.Cmd(t, "RCPT TO:<b@y.com>", "250")
	c.Cmd(t, "data", "354 ")
	c.SendRaw("\r\ntwo\r\n.\r\n")
	c.Expect(t, "550 5.7.1 not this one")
	if len(got) != 2 || got[0] != "\r\n\r\none" || got[1] != "\r\n\r\ntwo\r\n" {
		t.Fatalf("bodies %q", got)
	}
	rej := ts.recs.ByType(logrecord.Rejection)
	last := rej[len(rej)-1]
	if last.Response.Command != "data\r\n" {
		t.Fatalf("rejection record: command %q", last.Response.Command)
	}
	// and the transaction's sender and (last) recipient, as KumoMTA's
	// Rejection records carry them (KumoMTA docs: "Log Record")
	if last.Sender != "a@x.com" || len(last.Recipient) != 1 || last.Recipient[0] != "b@y.com" {
		t.Fatalf("rejection record after DATA: sender %q recipients %q", last.Sender, last.Recipient)
	}
	if rej[0].Response.Command != "BDAT\r\n" {
		t.Fatalf("first rejection command %q", rej[0].Response.Command)
	}
}

func TestNextFieldMatchesStringsFields(t *testing.T) {
	for _, in := range []string{"", " ", "5", "5 LAST", " 5\t LAST ", "5\u00a0LAST", "a b c d", "\u2003x\u2003"} {
		want := strings.Fields(in)
		var fields []string
		rest := []byte(in)
		for {
			var f []byte
			f, rest = nextField(rest)
			if len(f) == 0 {
				break
			}
			fields = append(fields, string(f))
		}
		if strings.Join(fields, "|") != strings.Join(want, "|") || len(fields) != len(want) {
			t.Errorf("%q: got %q, want %q", in, fields, want)
		}
	}
	for in, want := range map[string]bool{"0": true, "4294967295": true, "4294967296": false, "": false, "+1": false, "1_0": false, "99999999999999999999999": false} {
		if _, ok := parseChunkSize([]byte(in)); ok != want {
			t.Errorf("parseChunkSize(%q) ok=%v", in, ok)
		}
	}
}
