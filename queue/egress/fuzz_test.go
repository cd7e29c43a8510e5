package egress

import (
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
