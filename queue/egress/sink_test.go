package egress

import (
	"bytes"
	"fmt"
	"net/netip"
	"testing"

	"github.com/kumogo/kumogo/internal/message"
	"github.com/kumogo/kumogo/internal/smtpreply"
	"github.com/kumogo/kumogo/internal/testutil"
	"github.com/kumogo/kumogo/queue/egress/mx"
)

func sinkCandidate(t testing.TB, addr string) mx.Candidate {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return mx.Candidate{Name: "sink", Addr: ap.Addr(), Port: int(ap.Port())}
}

// body100K is a 100 KB message with CRLF lines, some starting with a dot.
func body100K() []byte {
	var b bytes.Buffer
	b.WriteString("From: a@x.example\r\nTo: b@y.example\r\nSubject: load\r\n\r\n")
	for i := 0; b.Len() < 100*1024; i++ {
		if i%50 == 0 {
			b.WriteString(".a line that needs stuffing\r\n")
			continue
		}
		fmt.Fprintf(&b, "line %06d abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789\r\n", i)
	}
	return b.Bytes()
}

// TestDeliverToGoSMTP sends real messages over one session to a go-smtp
// server, by BDAT and by DATA.
func TestDeliverToGoSMTP(t *testing.T) {
	body := body100K()
	for _, chunking := range []bool{true, false} {
		t.Run(fmt.Sprintf("chunking=%v", chunking), func(t *testing.T) {
			sink := testutil.StartBareSinkServer(t)
			path := testPath()
			path.EnableChunking = chunking
			s, err := Dial(t.Context(), sinkCandidate(t, sink.Addr()), path, nil, "client.example")
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := s.Extension("CHUNKING"); !ok {
				t.Fatal("go-smtp did not offer CHUNKING")
			}
			const n = 50
			gen := message.NewIDGenerator()
			for i := range n {
				e := env(t, "a@x.example", "b@y.example", "c@y.example")
				msg := message.New(gen, e.Sender, e.Recipients, body)
				res, err := s.SendMessage(t.Context(), msg)
				if err != nil {
					t.Fatalf("message %d: %v", i, err)
				}
				for _, r := range res.Responses {
					if r.Outcome() != smtpreply.Delivery {
						t.Fatalf("message %d: %+v", i, r)
					}
				}
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if got := sink.Messages.Load(); got != n {
				t.Errorf("sink saw %d messages", got)
			}
			if got := sink.Recipients.Load(); got != 2*n {
				t.Errorf("sink saw %d recipients", got)
			}
			// DATA bodies arrive unstuffed, so both ways deliver len(body).
			if got := sink.Bytes.Load(); got != int64(n*len(body)) {
				t.Errorf("sink saw %d bytes, want %d", got, n*len(body))
			}
			if got := sink.Sessions.Load(); got != 1 {
				t.Errorf("%d sessions", got)
			}
		})
	}
}

// BenchmarkSend100K sends 100 KB messages over one session to a go-smtp
// discard server, by BDAT and by DATA, reporting msgs/s.
func BenchmarkSend100K(b *testing.B) {
	body := body100K()
	for _, chunking := range []bool{true, false} {
		name := "DATA"
		if chunking {
			name = "BDAT"
		}
		b.Run(name, func(b *testing.B) {
			sink := testutil.StartBareSinkServer(b)
			path := testPath()
			path.EnableChunking = chunking
			s, err := Dial(b.Context(), sinkCandidate(b, sink.Addr()), path, nil, "client.example")
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			e := env(b, "a@x.example", "b@y.example")
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				res, err := s.Send(b.Context(), e, body)
				if err != nil || res.Responses[0].Code != 250 {
					b.Fatalf("%v %+v", err, res.Responses)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}
