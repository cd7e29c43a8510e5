package egress

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/kumogo/kumogo/internal/message"
	"github.com/kumogo/kumogo/queue/egress/mx"
)

// FuzzPeerReplies plays an arbitrary byte stream as everything a peer says
// (banner, EHLO and every later reply), then closes the connection. Whatever
// the peer sends, the client must not panic or hang, and must give one
// well-formed response per recipient.
func FuzzPeerReplies(f *testing.F) {
	for _, seed := range []string{
		"220 ok\r\n250-fake\r\n250-PIPELINING\r\n250 8BITMIME\r\n250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n250 2.0.0 done\r\n",
		"220 ok\r\n250 fake\r\n250 ok\r\n550 5.1.1 no\r\n250 ok\r\n354 go\r\n250 done\r\n",
		"220 ok\r\n250-fake\r\n250-CHUNKING\r\n250 PIPELINING\r\n250 ok\r\n250 ok\r\n250 ok\r\n250 2.0.0 chunk\r\n",
		"220 ok\r\n250-fake\r\n250 SIZE 10\r\n",
		"220-multi\r\n220 line\r\n250 fake\r\n451 4.3.0 later\r\n",
		"220 ok\r\n421 4.3.2 bye\r\n",
		"554 go away\r\n",
		"220 ok\r\n250-fake\r\n251 mismatched\r\n",
		"220 ok\n250 bare lf\n250 ok\n250 ok\n250 ok\n354 go\n250 ok\n",
		"2",
		"",
		"220 ok\r\n250 fake\r\n250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n",
		"220 ok\r\n250-fake\r\n250 STARTTLS\r\n220 go ahead\r\n",
		"999 weird\r\n099 low\r\n",
	} {
		f.Add([]byte(seed))
	}
	body := []byte("Subject: fuzz\r\n\r\nbody\r\n.leading dot\r\n")
	// One listener serves every input: a listener per input would run the
	// machine out of ephemeral ports within a minute of fuzzing.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	defer ln.Close()
	scripts := make(chan []byte)
	served := make(chan struct{})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			script := <-scripts
			go func() { _, _ = io.Copy(io.Discard, c) }()
			_, _ = c.Write(script)
			_ = c.Close()
			served <- struct{}{}
		}
	}()
	f.Fuzz(func(t *testing.T, script []byte) {
		go func() { scripts <- script }()
		ap := netip.MustParseAddrPort(ln.Addr().String())
		path := testPath()
		for _, d := range []*time.Duration{&path.BannerTimeout, &path.EhloTimeout, &path.MailFromTimeout,
			&path.RcptToTimeout, &path.DataTimeout, &path.DataDotTimeout, &path.RsetTimeout, &path.StartTLSTimeout} {
			*d = 2 * time.Second
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		start := time.Now()
		s, err := Dial(ctx, mx.Candidate{Name: "fuzz.example.", Addr: ap.Addr(), Port: int(ap.Port())}, path, nil, "client.example")
		if err == nil {
			env := Envelope{
				Sender:     message.Address{User: "a", Domain: "x.example"},
				Recipients: []message.Address{{User: "b", Domain: "y.example"}, {User: "c", Domain: "y.example"}},
			}
			res, _ := s.Send(ctx, env, body)
			if len(res.Responses) != len(env.Recipients) {
				t.Fatalf("%d responses for %d recipients", len(res.Responses), len(env.Recipients))
			}
			for i, r := range res.Responses {
				if r.Code < 100 || r.Code > 599 {
					t.Fatalf("recipient %d: response code %d out of range: %+v", i, r.Code, r)
				}
			}
			_ = s.Close()
		}
		if el := time.Since(start); el > 8*time.Second {
			t.Fatalf("took %v", el)
		}
		<-served
	})
}

// FuzzDataWire checks the DATA encoding against two receivers: a lenient
// one (any LF ends a line, as postfix and go-smtp read) must read back the
// body exactly, with its last line ending made CRLF (or a CRLF added when
// it has none); a strict one (only CRLF ends a line) must find the end of
// the data exactly at the end of the wire, never inside the body.
func FuzzDataWire(f *testing.F) {
	for _, s := range []string{"", "a", "a\r\n", "a\n", "\n", "\r\n", ".", ".\r\n", "a\r\n.\r\nb", "a\n.\nb\n", "..\r\n..", "\r", "a\r", "x\r\n.\r\n", "\n.0", "a\n.\r\nMAIL FROM:<x@y>\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var wire bytes.Buffer
		for _, b := range dataWire(body) {
			wire.Write(b)
		}
		w := wire.Bytes()
		got, rest, ok := readDot(w, false)
		if !ok || len(rest) > 0 {
			t.Fatalf("%q: wire %q: lenient receiver ends=%v leaving %q", body, w, ok, rest)
		}
		want := wantReadBack(body)
		if !bytes.Equal(got, want) {
			t.Fatalf("%q: wire %q reads back as %q, want %q", body, w, got, want)
		}
		if _, rest, ok := readDot(w, true); !ok || len(rest) > 0 {
			t.Fatalf("%q: wire %q: strict receiver ends=%v leaving %q", body, w, ok, rest)
		}
	})
}

// readDot reads dot-stuffed data up to its terminating "." line, removing
// the stuffed dots. With strict, only CRLF ends a line; otherwise LF does
// too. It returns the data, what follows the terminator, and whether one
// was found.
func readDot(w []byte, strict bool) (data, rest []byte, ok bool) {
	for len(w) > 0 {
		var line []byte
		if strict {
			i := bytes.Index(w, []byte("\r\n"))
			if i < 0 {
				return data, nil, false
			}
			line, w = w[:i+2], w[i+2:]
		} else {
			i := bytes.IndexByte(w, '\n')
			if i < 0 {
				return data, nil, false
			}
			line, w = w[:i+1], w[i+1:]
		}
		if string(line) == ".\r\n" || !strict && string(line) == ".\n" {
			return data, w, true
		}
		if line[0] == '.' {
			line = line[1:]
		}
		data = append(data, line...)
	}
	return data, nil, false
}

// wantReadBack is the body a receiver reads back from dataWire(body): the
// body with a CRLF made of a final bare LF, added after a final bare CR's
// CR or after a last line with no ending, and an empty line added after a
// final CR CR LF.
func wantReadBack(body []byte) []byte {
	want := bytes.Clone(body)
	switch n := len(want); {
	case n == 0:
	case want[n-1] == '\r':
		want = append(want, '\n')
		if n >= 2 && want[n-2] == '\r' {
			want = append(want, '\r', '\n')
		}
	case want[n-1] != '\n':
		want = append(want, '\r', '\n')
	case n == 1 || want[n-2] != '\r':
		want = append(want[:n-1], '\r', '\n')
	case n >= 3 && want[n-3] == '\r':
		want = append(want, '\r', '\n')
	}
	return want
}

// FuzzDataWireBareCR feeds the DATA encoding bodies made of CR, LF, dots
// and text (each fuzz byte picks one), the bare CRs a listener with
// invalid_line_endings = "Allow" keeps. Three receivers must each find the
// end of the data exactly at the end of the wire: a strict one (only CRLF
// ends a line, as KumoMTA and kumogo's listener read), a lenient one (any
// LF ends a line) and one that reads as net/textproto's dot reader does (CR
// CR LF is no line end). The body must read back as wantReadBack says.
func FuzzDataWireBareCR(f *testing.F) {
	for _, s := range []string{"\r", "x\r", "x\r\r", "x\r\r\n", "\r.\r", "\r.\r\n", "x\r.\r", "\r\n.\r", "\n.\n", ".\r\r\n.\r\n", "x\r\r\n.\r\n"} {
		f.Add([]byte(s), true)
	}
	f.Add([]byte{0, 1, 2, 3, 0, 0, 1, 2}, false)
	f.Fuzz(func(t *testing.T, in []byte, literal bool) {
		body := in
		if !literal {
			body = make([]byte, len(in))
			for i, c := range in {
				body[i] = "\r\n.x"[c%4]
			}
		}
		var wire bytes.Buffer
		for _, b := range dataWire(body) {
			wire.Write(b)
		}
		w := wire.Bytes()
		got, rest, ok := readDot(w, true)
		if !ok || len(rest) > 0 {
			t.Fatalf("%q: wire %q: strict receiver ends=%v leaving %q", body, w, ok, rest)
		}
		want := wantReadBack(body)
		if !bytes.Contains(bytes.ReplaceAll(body, []byte("\r\n"), nil), []byte("\n")) && !bytes.Equal(got, want) {
			// (with a bare LF the strict receiver sees no line start
			// where the encoder stuffed a dot, as FuzzDataWire notes)
			t.Fatalf("%q: wire %q reads back as %q, want %q", body, w, got, want)
		}
		got, rest, ok = readDot(w, false)
		if !ok || len(rest) > 0 {
			t.Fatalf("%q: wire %q: lenient receiver ends=%v leaving %q", body, w, ok, rest)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%q: wire %q reads back as %q by the lenient receiver, want %q", body, w, got, want)
		}
		if n, ok := textprotoEnd(w); !ok || n != len(w) {
			t.Fatalf("%q: wire %q: a net/textproto reader ends=%v after %d of %d bytes", body, w, ok, n, len(w))
		}
	})
}

// textprotoEnd runs net/textproto's dot-reader state machine over w and
// returns how many bytes it read up to and including the end line.
func textprotoEnd(w []byte) (int, bool) {
	const (
		beginLine = iota
		dot
		dotCR
		cr
		data
	)
	state := beginLine
	for i, c := range w {
		switch state {
		case beginLine:
			switch c {
			case '.':
				state = dot
			case '\r':
				state = cr
			default:
				state = data
			}
		case dot:
			if c == '\r' {
				state = dotCR
			} else {
				state = data
			}
		case dotCR:
			if c == '\n' {
				return i + 1, true
			}
			state = data
		case cr:
			if c == '\n' {
				state = beginLine
			} else {
				state = data
			}
		case data:
			if c == '\r' {
				state = cr
			}
		}
	}
	return len(w), false
}
