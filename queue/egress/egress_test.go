package egress

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/message"
	"github.com/kumogo/kumogo/internal/smtpreply"
	"github.com/kumogo/kumogo/queue/egress/mx"
)

func addr(t testing.TB, s string) message.Address {
	t.Helper()
	a, err := message.ParseAddress(s)
	if err != nil {
		t.Fatalf("address %q: %v", s, err)
	}
	return a
}

func env(t testing.TB, from string, to ...string) Envelope {
	e := Envelope{Sender: addr(t, from)}
	for _, r := range to {
		e.Recipients = append(e.Recipients, addr(t, r))
	}
	return e
}

func dial(t *testing.T, p *fakePeer, path *config.EgressPath) *Session {
	t.Helper()
	s, err := Dial(t.Context(), p.candidate(), path, nil, "client.example")
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func send(t *testing.T, s *Session, e Envelope, body string) Result {
	t.Helper()
	res, err := s.Send(t.Context(), e, []byte(body))
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	return res
}

const body1 = "Subject: hi\r\n\r\nhello\r\n"

func TestDeliverPipelined(t *testing.T) {
	p := startPeer(t, peerOpts{ext: []string{"PIPELINING", "8BITMIME", "SIZE 1000000", "ENHANCEDSTATUSCODES"}})
	s := dial(t, p, testPath())
	if _, ok := s.Extension("PIPELINING"); !ok {
		t.Fatal("PIPELINING not parsed")
	}
	if v, _ := s.Extension("SIZE"); v != "1000000" {
		t.Errorf("SIZE param %q", v)
	}
	res := send(t, s, env(t, "a@x.example", "b@y.example", "c@y.example"), body1)
	want := smtpreply.Response{Code: 250, Enhanced: &smtpreply.EnhancedCode{Class: 2}, Content: "Ok: queued as 1234", Command: ".\r\n"}
	for i, r := range res.Responses {
		if r.Code != want.Code || *r.Enhanced != *want.Enhanced || r.Content != want.Content || r.Command != want.Command {
			t.Errorf("response %d = %+v", i, r)
		}
		if r.Outcome() != smtpreply.Delivery {
			t.Errorf("outcome %v", r.Outcome())
		}
	}
	ps := p.session(0)
	pipelined := "MAIL FROM:<a@x.example> SIZE=" + itoa(len(body1)) + "\r\nRCPT TO:<b@y.example>\r\nRCPT TO:<c@y.example>\r\nDATA\r\n"
	if !slices.Contains(ps.Chunks(), pipelined) {
		t.Errorf("MAIL+RCPT+DATA did not arrive in one read: %q", ps.Chunks())
	}
	if b := ps.Bodies(); len(b) != 1 || string(b[0]) != body1 {
		t.Errorf("bodies %q", b)
	}
	if s.ID() == "" || len(s.ID()) != 36 || s.PeerName() != "fake.example." || s.PeerAddr() != p.ln.Addr().String() {
		t.Errorf("id %q peer %q %q", s.ID(), s.PeerName(), s.PeerAddr())
	}
	if s.TLSVersion() != "" || s.TLSCipher() != "" {
		t.Errorf("TLS info on a clear session")
	}
	if s.Banner().Code != 220 || !strings.HasPrefix(s.Banner().Content, "fake.example") {
		t.Errorf("banner %+v", s.Banner())
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestNoPipelining(t *testing.T) {
	for _, tc := range []struct {
		name   string
		ext    []string
		enable bool
	}{
		{"not offered", nil, true},
		{"disabled", []string{"PIPELINING"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startPeer(t, peerOpts{ext: tc.ext})
			path := testPath()
			path.EnablePipelining = tc.enable
			s := dial(t, p, path)
			send(t, s, env(t, "a@x.example", "b@y.example", "c@y.example"), body1)
			for _, c := range p.session(0).Chunks() {
				if strings.Count(c, "\r\n") > 1 && !strings.Contains(c, "hello") {
					t.Errorf("several commands in one read without pipelining: %q", c)
				}
			}
			lines := p.session(0).Lines()
			if !slices.Contains(lines, "DATA") || !slices.Contains(lines, "RCPT TO:<c@y.example>") {
				t.Errorf("lines %q", lines)
			}
		})
	}
}

func TestRSETBetweenTransactions(t *testing.T) {
	for _, rset := range []bool{true, false} {
		p := startPeer(t, peerOpts{ext: []string{"PIPELINING"}})
		path := testPath()
		path.EnableRSET = rset
		s := dial(t, p, path)
		send(t, s, env(t, "a@x.example", "b@y.example"), body1)
		send(t, s, env(t, "a@x.example", "c@y.example"), body1)
		res := send(t, s, env(t, "", "d@y.example"), body1)
		if res.Responses[0].Code != 250 || s.Transactions() != 3 {
			t.Fatalf("third %+v", res)
		}
		var verbs []string
		for _, l := range p.session(0).Lines() {
			verbs = append(verbs, strings.Fields(l)[0])
		}
		got := strings.Join(verbs, " ")
		want := "EHLO MAIL RCPT DATA RSET MAIL RCPT DATA RSET MAIL RCPT DATA"
		if !rset {
			want = "EHLO MAIL RCPT DATA MAIL RCPT DATA MAIL RCPT DATA"
		}
		if got != want {
			t.Errorf("rset=%v: %s", rset, got)
		}
		if rset && !slices.Contains(p.session(0).Chunks(), "RSET\r\nMAIL FROM:<a@x.example>\r\nRCPT TO:<c@y.example>\r\nDATA\r\n") {
			t.Errorf("RSET not pipelined: %q", p.session(0).Chunks())
		}
		if !slices.Contains(p.session(0).Lines(), "MAIL FROM:<>") {
			t.Errorf("null sender not sent as <>")
		}
		if len(p.Sessions()) != 1 {
			t.Errorf("%d connections", len(p.Sessions()))
		}
	}
}

func TestChunking(t *testing.T) {
	body := ".starts with a dot\r\nline\r\n.. two\r\n"
	for _, tc := range []struct {
		name   string
		ext    []string
		enable bool
		bdat   bool
	}{
		{"offered", []string{"PIPELINING", "CHUNKING"}, true, true},
		{"offered no pipelining", []string{"CHUNKING"}, true, true},
		{"disabled", []string{"PIPELINING", "CHUNKING"}, false, false},
		{"not offered", []string{"PIPELINING"}, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startPeer(t, peerOpts{ext: tc.ext})
			path := testPath()
			path.EnableChunking = tc.enable
			s := dial(t, p, path)
			res := send(t, s, env(t, "a@x.example", "b@y.example"), body)
			lines := p.session(0).Lines()
			bdatLine := "BDAT " + itoa(len(body)) + " LAST"
			if tc.bdat {
				if !slices.Contains(lines, bdatLine) || slices.Contains(lines, "DATA") {
					t.Errorf("lines %q", lines)
				}
				if slices.Contains(tc.ext, "PIPELINING") && !slices.Contains(p.session(0).Chunks(),
					"MAIL FROM:<a@x.example>\r\nRCPT TO:<b@y.example>\r\n"+bdatLine+"\r\n"+body) {
					t.Errorf("MAIL+RCPT+BDAT+chunk not in one read: %q", p.session(0).Chunks())
				}
				if res.Responses[0].Command != bdatLine+"\r\n" {
					t.Errorf("command %q", res.Responses[0].Command)
				}
			} else if slices.Contains(lines, bdatLine) || !slices.Contains(lines, "DATA") {
				t.Errorf("lines %q", lines)
			}
			if b := p.session(0).Bodies(); len(b) != 1 || string(b[0]) != body {
				t.Errorf("body %q", b)
			}
			// a second message on the same session
			send(t, s, env(t, "a@x.example", "c@y.example"), body1)
			if b := p.session(0).Bodies(); len(b) != 2 || string(b[1]) != body1 {
				t.Errorf("second body %q", b)
			}
		})
	}
}

func TestDotStuffing(t *testing.T) {
	cases := []struct{ in, want string }{
		{".\r\n", ".\r\n"},
		{"a\r\n.\r\nb\r\n", "a\r\n.\r\nb\r\n"},
		{"..x\r\n.y\r\n", "..x\r\n.y\r\n"},
		{"no final newline", "no final newline\r\n"},
		{"x\r\n.", "x\r\n.\r\n"},
		{"", ""},
	}
	p := startPeer(t, peerOpts{ext: []string{"PIPELINING"}})
	s := dial(t, p, testPath())
	for _, c := range cases {
		send(t, s, env(t, "a@x.example", "b@y.example"), c.in)
	}
	bodies := p.session(0).Bodies()
	for i, c := range cases {
		if i >= len(bodies) || string(bodies[i]) != c.want {
			t.Errorf("body %q arrived as %q", c.in, bodies)
		}
	}
	var raw strings.Builder
	for _, c := range p.session(0).Chunks() {
		raw.WriteString(c)
	}
	if !strings.Contains(raw.String(), "\r\n...x\r\n..y\r\n.\r\n") {
		t.Errorf("wire form not stuffed: %q", raw.String())
	}
	got := strings.Join(stuffedString([]byte(".a\r\n.b\r\nc")), "")
	if got != "..a\r\n..b\r\nc" {
		t.Errorf("stuff = %q", got)
	}
}

func stuffedString(b []byte) []string {
	var out []string
	for _, s := range stuff(b) {
		out = append(out, string(s))
	}
	return out
}

// rejectAt answers cmd (a verb prefix) with reply.
func rejectAt(verb, reply string) func(*peerSession, string) string {
	return func(_ *peerSession, line string) string {
		if strings.HasPrefix(line, verb) {
			return reply
		}
		return ""
	}
}

func TestRejections(t *testing.T) {
	type want struct {
		code    int
		content string
		command string
		outcome smtpreply.Outcome
	}
	cases := []struct {
		name     string
		respond  func(*peerSession, string) string
		final    func(*peerSession, []byte) string
		pipeline bool
		wants    []want // per recipient b, c
		bodies   int
	}{
		{name: "MAIL 550", respond: rejectAt("MAIL", "550 5.7.1 sender refused"), pipeline: true,
			wants: []want{{550, "sender refused", "MAIL FROM:<a@x.example>\r\n", smtpreply.Bounce}, {550, "sender refused", "MAIL FROM:<a@x.example>\r\n", smtpreply.Bounce}}},
		{name: "MAIL 451 lockstep", respond: rejectAt("MAIL", "451 4.3.0 try later"), pipeline: false,
			wants: []want{{451, "try later", "MAIL FROM:<a@x.example>\r\n", smtpreply.TransientFailure}, {451, "try later", "MAIL FROM:<a@x.example>\r\n", smtpreply.TransientFailure}}},
		{name: "one RCPT 550", respond: rejectAt("RCPT TO:<b@", "550 5.1.1 no such user"), pipeline: true, bodies: 1,
			wants: []want{{550, "no such user", "RCPT TO:<b@y.example>\r\n", smtpreply.Bounce}, {250, "Ok: queued as 1234", ".\r\n", smtpreply.Delivery}}},
		{name: "all RCPT 4xx", respond: rejectAt("RCPT", "452 4.5.3 Too many recipients"), pipeline: true,
			wants: []want{{452, "Too many recipients", "RCPT TO:<b@y.example>\r\n", smtpreply.TransientFailure}, {452, "Too many recipients", "RCPT TO:<c@y.example>\r\n", smtpreply.TransientFailure}}},
		{name: "all RCPT 5xx lockstep", respond: rejectAt("RCPT", "550 5.1.1 nope"), pipeline: false,
			wants: []want{{550, "nope", "RCPT TO:<b@y.example>\r\n", smtpreply.Bounce}, {550, "nope", "RCPT TO:<c@y.example>\r\n", smtpreply.Bounce}}},
		{name: "DATA 451", respond: rejectAt("DATA", "451 4.3.0 not now"), pipeline: true,
			wants: []want{{451, "not now", "DATA\r\n", smtpreply.TransientFailure}, {451, "not now", "DATA\r\n", smtpreply.TransientFailure}}},
		{name: "DATA 554", respond: rejectAt("DATA", "554 5.7.1 no"), pipeline: false,
			wants: []want{{554, "no", "DATA\r\n", smtpreply.Bounce}, {554, "no", "DATA\r\n", smtpreply.Bounce}}},
		{name: "after dot 550", final: func(*peerSession, []byte) string { return "550 5.7.1 spam" }, pipeline: true, bodies: 1,
			wants: []want{{550, "spam", ".\r\n", smtpreply.Bounce}, {550, "spam", ".\r\n", smtpreply.Bounce}}},
		{name: "after dot 452", final: func(*peerSession, []byte) string { return "452 4.2.2 mailbox full" }, pipeline: true, bodies: 1,
			wants: []want{{452, "mailbox full", ".\r\n", smtpreply.TransientFailure}, {452, "mailbox full", ".\r\n", smtpreply.TransientFailure}}},
		{name: "after dot 503", final: func(*peerSession, []byte) string { return "503 5.5.1 bad sequence" }, pipeline: true, bodies: 1,
			wants: []want{{503, "bad sequence", ".\r\n", smtpreply.TransientFailure}, {503, "bad sequence", ".\r\n", smtpreply.TransientFailure}}},
		{name: "DATA 354 although no recipient", respond: func(ps *peerSession, line string) string {
			switch {
			case strings.HasPrefix(line, "RCPT"):
				return "550 5.1.1 nope"
			case line == "DATA":
				return "354 go ahead anyway"
			}
			return ""
		}, pipeline: true, bodies: 1,
			wants: []want{{550, "nope", "RCPT TO:<b@y.example>\r\n", smtpreply.Bounce}, {550, "nope", "RCPT TO:<c@y.example>\r\n", smtpreply.Bounce}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ext := []string{"ENHANCEDSTATUSCODES"}
			if tc.pipeline {
				ext = append(ext, "PIPELINING")
			}
			p := startPeer(t, peerOpts{ext: ext, respond: tc.respond, final: tc.final})
			s := dial(t, p, testPath())
			res := send(t, s, env(t, "a@x.example", "b@y.example", "c@y.example"), body1)
			for i, w := range tc.wants {
				r := res.Responses[i]
				if r.Code != w.code || r.Content != w.content || r.Command != w.command || r.Outcome() != w.outcome {
					t.Errorf("rcpt %d: %+v (%v), want %+v", i, r, r.Outcome(), w)
				}
			}
			if !s.Usable() {
				t.Errorf("session unusable after a rejection")
			}
			// the session still works
			if r := send(t, s, env(t, "a@x.example", "ok@y.example"), body1); !s.Usable() || r.Responses[0].Code == 0 {
				t.Errorf("second transaction: %+v", r)
			}
			if tc.bodies > 0 && len(p.session(0).Bodies()) < tc.bodies {
				t.Errorf("bodies %d", len(p.session(0).Bodies()))
			}
			if strings.HasPrefix(tc.name, "DATA 354") {
				lines := p.session(0).Lines()
				if len(p.session(0).Bodies()) < 1 || string(p.session(0).Bodies()[0]) != "" {
					t.Errorf("lone dot not sent: %q", lines)
				}
			}
		})
	}
}

func TestPipelinedBDATRejections(t *testing.T) {
	p := startPeer(t, peerOpts{ext: []string{"PIPELINING", "CHUNKING"}, respond: rejectAt("RCPT TO:<b", "550 5.1.1 nope")})
	s := dial(t, p, testPath())
	res := send(t, s, env(t, "a@x.example", "b@y.example"), body1)
	if r := res.Responses[0]; r.Code != 550 || r.Command != "RCPT TO:<b@y.example>\r\n" {
		t.Errorf("all rejected: %+v", r)
	}
	res = send(t, s, env(t, "a@x.example", "b@y.example", "c@y.example"), body1)
	if r := res.Responses[0]; r.Code != 550 {
		t.Errorf("b: %+v", r)
	}
	if r := res.Responses[1]; r.Code != 250 || r.Command != "BDAT "+itoa(len(body1))+" LAST\r\n" {
		t.Errorf("c: %+v", r)
	}
	res = send(t, s, env(t, "a@x.example", "d@y.example"), body1)
	if r := res.Responses[0]; r.Code != 250 || !s.Usable() {
		t.Errorf("after rejections: %+v", r)
	}
	if n := len(p.session(0).Bodies()); n != 2 {
		t.Errorf("%d bodies delivered, want 2", n)
	}
}

func Test421MakesSessionUnusable(t *testing.T) {
	p := startPeer(t, peerOpts{ext: []string{"PIPELINING"}, respond: rejectAt("MAIL", "421 4.3.2 shutting down")})
	s := dial(t, p, testPath())
	res, _ := s.Send(t.Context(), env(t, "a@x.example", "b@y.example"), []byte(body1))
	if r := res.Responses[0]; r.Code != 421 || r.Content != "shutting down" || r.Outcome() != smtpreply.TransientFailure {
		t.Errorf("response %+v", r)
	}
	if s.Usable() {
		t.Fatal("usable after 421")
	}
	res, err := s.Send(t.Context(), env(t, "a@x.example", "b@y.example"), []byte(body1))
	if !errors.Is(err, ErrUnusable) || res.Responses[0].Code != 400 {
		t.Errorf("send on unusable session: %v %+v", err, res)
	}
}

func TestDisconnects(t *testing.T) {
	for _, tc := range []struct {
		name    string
		respond func(*peerSession, string) string
		final   func(*peerSession, []byte) string
	}{
		{"at MAIL", rejectAt("MAIL", "CLOSE"), nil},
		{"at RCPT", rejectAt("RCPT", "CLOSE"), nil},
		{"at DATA", rejectAt("DATA", "CLOSE"), nil},
		{"after dot", nil, func(*peerSession, []byte) string { return "CLOSE" }},
	} {
		for _, pipe := range []bool{true, false} {
			t.Run(tc.name, func(t *testing.T) {
				ext := []string{}
				if pipe {
					ext = append(ext, "PIPELINING")
				}
				p := startPeer(t, peerOpts{ext: ext, respond: tc.respond, final: tc.final})
				s := dial(t, p, testPath())
				res, err := s.Send(t.Context(), env(t, "a@x.example", "b@y.example", "c@y.example"), []byte(body1))
				if err == nil {
					t.Fatal("no error")
				}
				for _, r := range res.Responses {
					if r.Code != 400 || !strings.HasPrefix(r.Content, "KumoMTA internal: failed to send message: ") || r.Outcome() != smtpreply.TransientFailure {
						t.Errorf("response %+v", r)
					}
				}
				if s.Usable() {
					t.Error("usable after disconnect")
				}
			})
		}
	}
}

func TestTimeouts(t *testing.T) {
	t.Run("MAIL", func(t *testing.T) {
		p := startPeer(t, peerOpts{ext: []string{"PIPELINING"}, respond: rejectAt("MAIL", "HANG")})
		path := testPath()
		path.MailFromTimeout = 150 * time.Millisecond
		s := dial(t, p, path)
		start := time.Now()
		res, err := s.Send(t.Context(), env(t, "a@x.example", "b@y.example"), []byte(body1))
		if err == nil || time.Since(start) > 2*time.Second {
			t.Fatalf("err %v after %v", err, time.Since(start))
		}
		r := res.Responses[0]
		want := `KumoMTA internal: failed to send message: Timed Out waiting 150ms for response to "MAIL FROM:<a@x.example>"`
		if r.Code != 421 || r.Enhanced == nil || *r.Enhanced != (smtpreply.EnhancedCode{Class: 4, Subject: 4, Detail: 2}) ||
			r.Content != want || r.Command != "MAIL FROM:<a@x.example>\r\n" || r.Outcome() != smtpreply.TransientFailure {
			t.Errorf("response %+v", r)
		}
		if r.String() != "421 4.4.2 "+want {
			t.Errorf("String() = %q", r.String())
		}
		if s.Usable() {
			t.Error("usable after timeout")
		}
	})
	t.Run("after dot", func(t *testing.T) {
		p := startPeer(t, peerOpts{final: func(*peerSession, []byte) string { time.Sleep(time.Second); return "" }})
		path := testPath()
		path.DataDotTimeout = 100 * time.Millisecond
		s := dial(t, p, path)
		res, err := s.Send(t.Context(), env(t, "a@x.example", "b@y.example"), []byte(body1))
		if err == nil || res.Responses[0].Code != 421 || !strings.Contains(res.Responses[0].Content, `Timed Out waiting 100ms for response to "."`) {
			t.Errorf("%v %+v", err, res.Responses[0])
		}
	})
	t.Run("banner", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			c, err := ln.Accept()
			if err == nil {
				time.Sleep(2 * time.Second)
				c.Close()
			}
		}()
		path := testPath()
		path.BannerTimeout = 100 * time.Millisecond
		ap := netip.MustParseAddrPort(ln.Addr().String())
		_, err = Dial(t.Context(), mx.Candidate{Name: "slow", Addr: ap.Addr(), Port: int(ap.Port())}, path, nil, "c")
		if err == nil || !strings.Contains(err.Error(), "Timed Out waiting 100ms for response") {
			t.Errorf("err %v", err)
		}
		if r := ResponseFor(err); r.Code != 400 || !strings.Contains(r.Content, "failed to connect to any candidate hosts") {
			t.Errorf("ResponseFor %+v", r)
		}
	})
	t.Run("context", func(t *testing.T) {
		p := startPeer(t, peerOpts{respond: rejectAt("MAIL", "HANG")})
		s := dial(t, p, testPath())
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		defer cancel()
		start := time.Now()
		res, err := s.Send(ctx, env(t, "a@x.example", "b@y.example"), []byte(body1))
		if err == nil || time.Since(start) > 2*time.Second || !strings.Contains(res.Responses[0].Content, "context deadline exceeded") {
			t.Errorf("%v after %v: %+v", err, time.Since(start), res.Responses[0])
		}
	})
}

func TestStartTLS(t *testing.T) {
	srvTLS, pool := selfSigned(t, "fake.example")
	cases := []struct {
		mode    string
		offered bool
		trusted bool
		wantTLS bool
		wantErr string
	}{
		{TLSOpportunistic, true, true, true, ""},
		{TLSOpportunistic, true, false, false, "TLS handshake"},
		{TLSOpportunistic, false, false, false, ""},
		{TLSOpportunisticInsecure, true, false, true, ""},
		{TLSRequired, true, true, true, ""},
		{TLSRequired, false, true, false, "tls policy is Required but STARTTLS is not advertised by fake.example. 127.0.0.1:"},
		{TLSRequiredInsecure, true, false, true, ""},
		{TLSRequiredInsecure, false, false, false, "STARTTLS is not advertised"},
		{TLSDisabled, true, true, false, ""},
	}
	for _, c := range cases {
		name := c.mode
		if !c.offered {
			name += "/not offered"
		}
		if !c.trusted {
			name += "/untrusted"
		}
		t.Run(name, func(t *testing.T) {
			ext := []string{"PIPELINING"}
			if c.offered {
				ext = append(ext, "STARTTLS")
			}
			p := startPeer(t, peerOpts{ext: ext, tls: srvTLS})
			path := testPath()
			path.EnableTLS = c.mode
			d := Dialer{}
			if c.trusted {
				d.RootCAs = pool
			}
			s, err := d.Dial(t.Context(), p.candidate(), path, nil, "client.example")
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error()+ResponseFor(err).Content, c.wantErr) {
					t.Fatalf("err = %v, want %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if (s.TLS() != nil) != c.wantTLS {
				t.Fatalf("TLS = %v", s.TLS() != nil)
			}
			res := send(t, s, env(t, "a@x.example", "b@y.example"), body1)
			if res.Responses[0].Code != 250 {
				t.Errorf("%+v", res.Responses[0])
			}
			lines := p.session(0).Lines()
			ehlos := 0
			for _, l := range lines {
				if strings.HasPrefix(l, "EHLO") {
					ehlos++
				}
			}
			if c.wantTLS {
				if ehlos != 2 || !slices.Contains(lines, "STARTTLS") {
					t.Errorf("transcript %q", lines)
				}
				if s.TLSVersion() != "TLSv1.3" || s.TLSCipher() == "" {
					t.Errorf("tls %q %q", s.TLSVersion(), s.TLSCipher())
				}
				if c.trusted && s.TLSPeerSubject() != "CN=fake.example" {
					t.Errorf("subject %q", s.TLSPeerSubject())
				}
				if _, ok := s.Extension("STARTTLS"); ok {
					t.Errorf("extensions not refreshed after TLS")
				}
			} else if slices.Contains(lines, "STARTTLS") {
				t.Errorf("STARTTLS sent: %q", lines)
			}
		})
	}
}

func TestTLSReconnectOnFailedHandshake(t *testing.T) {
	srvTLS, _ := selfSigned(t, "fake.example")
	p := startPeer(t, peerOpts{ext: []string{"STARTTLS"}, tls: srvTLS})
	path := testPath()
	path.EnableTLS = TLSOpportunistic
	path.OpportunisticTLSReconnectOnFailedHandshake = true
	plan := &mx.ConnectionPlan{Candidates: []mx.Candidate{p.candidate()}}
	s, err := Connect(t.Context(), plan, path, nil, "client.example")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.TLS() != nil || len(p.Sessions()) != 2 || slices.Contains(p.session(1).Lines(), "STARTTLS") {
		t.Errorf("tls %v sessions %d", s.TLS() != nil, len(p.Sessions()))
	}
}

func TestEightBitChecks(t *testing.T) {
	body8 := "Subject: caf\xc3\xa9\r\n\r\nd\xc3\xa9j\xc3\xa0 vu\r\n"
	cases := []struct {
		name     string
		ext      []string
		ignore   bool
		env      Envelope
		body     string
		code     int
		content  string
		mailLine string
	}{
		{"8bit body, no 8BITMIME", nil, false, env(t, "a@x.example", "b@y.example"), body8, 554,
			"KumoMTA internal: DATA is 8bit, destination does not support 8BITMIME. Conversion via msg:check_fix_conformance during reception is required", ""},
		{"8bit body, 8BITMIME", []string{"8BITMIME"}, false, env(t, "a@x.example", "b@y.example"), body8, 250, "", "MAIL FROM:<a@x.example> BODY=8BITMIME"},
		{"8bit body, ignored", nil, true, env(t, "a@x.example", "b@y.example"), body8, 250, "", "MAIL FROM:<a@x.example>"},
		{"utf8 envelope, no SMTPUTF8", []string{"8BITMIME"}, false, env(t, "a@x.example", "j\u00f6rg@y.example"), body1, 554,
			"KumoMTA internal: envelope is 8bit, destination does not support SMTPUTF8.", ""},
		{"utf8 envelope, SMTPUTF8", []string{"SMTPUTF8"}, false, env(t, "a@x.example", "j\u00f6rg@y.example"), body1, 250, "", "MAIL FROM:<a@x.example> SMTPUTF8"},
		{"7bit", nil, false, env(t, "a@x.example", "b@y.example"), body1, 250, "", "MAIL FROM:<a@x.example>"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := startPeer(t, peerOpts{ext: c.ext})
			path := testPath()
			path.Ignore8BitChecks = c.ignore
			s := dial(t, p, path)
			res := send(t, s, c.env, c.body)
			r := res.Responses[0]
			if r.Code != c.code || (c.content != "" && r.Content != c.content) {
				t.Errorf("response %+v", r)
			}
			lines := p.session(0).Lines()
			if c.mailLine == "" {
				if r.Outcome() != smtpreply.Bounce || len(lines) != 1 {
					t.Errorf("outcome %v, lines %q", r.Outcome(), lines)
				}
			} else if !slices.Contains(lines, c.mailLine) {
				t.Errorf("lines %q, want %q", lines, c.mailLine)
			}
		})
	}
	if r := (smtpreply.Response{Code: 554, Enhanced: enh(5, 6, 3), Content: "x"}); r.String() != "554 5.6.3 x" {
		t.Error(r.String())
	}
}

func TestSizeLimit(t *testing.T) {
	p := startPeer(t, peerOpts{ext: []string{"SIZE 10"}})
	s := dial(t, p, testPath())
	res := send(t, s, env(t, "a@x.example", "b@y.example"), body1)
	if r := res.Responses[0]; r.Code != 552 || r.Outcome() != smtpreply.Bounce {
		t.Errorf("%+v", r)
	}
}

func TestHELOFallbackAndBanner(t *testing.T) {
	p := startPeer(t, peerOpts{noEHLO: true})
	s := dial(t, p, testPath())
	send(t, s, env(t, "a@x.example", "b@y.example"), body1)
	if lines := p.session(0).Lines(); lines[0] != "EHLO client.example" || lines[1] != "HELO client.example" {
		t.Errorf("lines %q", lines)
	}

	p = startPeer(t, peerOpts{banner: "554 5.7.1 go away"})
	_, err := Dial(t.Context(), p.candidate(), testPath(), nil, "c")
	var e *smtpreply.Error
	if !errors.As(err, &e) || e.Response.Code != 554 || e.Response.Content != "go away" {
		t.Errorf("err = %v", err)
	}
}

func TestAuthPlain(t *testing.T) {
	p := startPeer(t, peerOpts{ext: []string{"AUTH PLAIN"}})
	path := testPath()
	path.SMTPAuthPlainUsername = "user"
	path.SMTPAuthPlainPassword = config.KeySource{Data: []byte("pass")}
	if _, err := Dial(t.Context(), p.candidate(), path, nil, "c"); err == nil ||
		!strings.Contains(ResponseFor(err).Content, "TLS is not enabled and AUTH PLAIN is required") {
		t.Errorf("auth without TLS: %v", err)
	}
	path.AllowSMTPAuthPlainWithoutTLS = true
	s := dial(t, p, path)
	if !slices.Contains(p.session(1).Lines(), "AUTH PLAIN AHVzZXIAcGFzcw==") {
		t.Errorf("lines %q", p.session(1).Lines())
	}
	s.Close()
	if l := p.session(1).Lines(); l[len(l)-1] != "QUIT" {
		t.Errorf("no QUIT at Close: %q", l)
	}
}

func TestSourceAddressAndRemotePort(t *testing.T) {
	p := startPeer(t, peerOpts{})
	cand := p.candidate()
	port := cand.Port
	cand.Port = 1 // overridden by remote_port
	src := &config.EgressSource{Name: "s", SourceAddress: "127.0.0.1", RemotePort: port, EhloDomain: "src.example"}
	s, err := Dial(t.Context(), cand, testPath(), src, "")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.LocalAddr().Addr() != netip.MustParseAddr("127.0.0.1") || s.Candidate().Port != port {
		t.Errorf("local %v cand %+v", s.LocalAddr(), s.Candidate())
	}
	if l := p.session(0).Lines(); l[0] != "EHLO src.example" {
		t.Errorf("ehlo %q", l[0])
	}
	src.SourceAddress = "not-an-ip"
	if _, err := Dial(t.Context(), cand, testPath(), src, ""); err == nil {
		t.Error("bad source address accepted")
	}
}

func TestConnectNextHost(t *testing.T) {
	p := startPeer(t, peerOpts{})
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	deadAP := netip.MustParseAddrPort(dead.Addr().String())
	dead.Close()
	deadCand := mx.Candidate{Name: "dead.example.", Addr: deadAP.Addr(), Port: int(deadAP.Port())}
	plan := &mx.ConnectionPlan{Site: "s", Candidates: []mx.Candidate{deadCand, p.candidate()}}
	s, err := Connect(t.Context(), plan, testPath(), nil, "c")
	if err != nil {
		t.Fatal(err)
	}
	if s.PeerName() != "fake.example." {
		t.Errorf("peer %q", s.PeerName())
	}
	s.Close()

	_, err = Connect(t.Context(), &mx.ConnectionPlan{Candidates: []mx.Candidate{deadCand}}, testPath(), nil, "c")
	r := ResponseFor(err)
	if r.Code != 400 || !strings.HasPrefix(r.Content, "KumoMTA internal: failed to connect to any candidate hosts: ") || r.Outcome() != smtpreply.TransientFailure {
		t.Errorf("all dead: %+v", r)
	}

	path := testPath()
	path.ProhibitedHosts = config.DefaultEgressPath().ProhibitedHosts
	_, err = Connect(t.Context(), plan, path, nil, "c")
	r = ResponseFor(err)
	if r.Code != 550 || r.Enhanced == nil || r.Content != deadAP.Addr().String()+" is on the list of prohibited_hosts" || r.Outcome() != smtpreply.Bounce {
		t.Errorf("prohibited: %+v", r)
	}
	path = testPath()
	path.SkipHosts = config.MustCIDRList("127.0.0.0/8")
	_, err = Connect(t.Context(), plan, path, nil, "c")
	if r := ResponseFor(err); r.String() != "451 4.4.4 KumoMTA internal: MX consisted solely of hosts on the skip_hosts list" {
		t.Errorf("skip: %q", r.String())
	}
	// ip_lookup_strategy: an IPv6 address of the host (where nothing
	// listens) before its IPv4 one (the peer)
	v6 := mx.Candidate{Name: "fake.example.", Addr: netip.MustParseAddr("::1"), Port: int(deadAP.Port())}
	both := &mx.ConnectionPlan{Site: "s", Candidates: []mx.Candidate{v6, p.candidate()}}
	path = testPath()
	path.IPLookupStrategy = mx.Ipv6Only
	_, err = Connect(t.Context(), both, path, nil, "c")
	if r := ResponseFor(err); r.Code != 400 || !strings.Contains(r.Content, "[::1]") {
		t.Errorf("Ipv6Only tried something else than [::1]: %+v", r)
	}
	path.IPLookupStrategy = mx.Ipv4Only
	if s, err := Connect(t.Context(), both, path, nil, "c"); err != nil {
		t.Errorf("Ipv4Only: %v", err)
	} else {
		s.Close()
	}
	path.IPLookupStrategy = mx.Ipv6Only
	_, err = Connect(t.Context(), &mx.ConnectionPlan{Candidates: []mx.Candidate{p.candidate()}}, path, nil, "c")
	if r := ResponseFor(err); r.String() != "451 4.4.4 MX didn't resolve to any hosts" {
		t.Errorf("Ipv6Only with only IPv4 addresses: %q", r.String())
	}
	if r := ResponseFor(&mx.Failure{Code: 556, Text: mx.TextNullMX}); r.String() != "556 5.1.10 Recipient address has a null MX" || r.Outcome() != smtpreply.Bounce {
		t.Errorf("null MX: %+v", r)
	}
}

func TestMultilineResponse(t *testing.T) {
	p := startPeer(t, peerOpts{ext: []string{"PIPELINING"}, final: func(*peerSession, []byte) string {
		return "250-2.0.0 first line\n250-2.0.0 second line\n250 2.0.0 queued as X"
	}})
	s := dial(t, p, testPath())
	res := send(t, s, env(t, "a@x.example", "b@y.example"), body1)
	r := res.Responses[0]
	if r.Content != "first line\nsecond line\nqueued as X" || r.String() != "250 2.0.0 first line second line queued as X" {
		t.Errorf("%+v", r)
	}
}

func TestWritePath(t *testing.T) {
	cases := map[string]string{
		"user@example.com":           "user@example.com",
		`"john doe"@example.com`:     `"john doe"@example.com`,
		`"a\"b"@example.com`:         `"a\"b"@example.com`,
		"first.last+tag@example.com": "first.last+tag@example.com",
		"user@[10.0.0.1]":            "user@[10.0.0.1]",
	}
	for in, want := range cases {
		var b strings.Builder
		writePath(&b, addr(t, in))
		if b.String() != want {
			t.Errorf("%s → %s, want %s", in, b.String(), want)
		}
	}
}

func TestHas8bit(t *testing.T) {
	long := []byte(strings.Repeat("a", 100))
	if has8bit(long) {
		t.Error("7bit reported 8bit")
	}
	for i := range long {
		long[i] = 0x80
		if !has8bit(long) {
			t.Errorf("8bit at %d missed", i)
		}
		long[i] = 'a'
	}
}
