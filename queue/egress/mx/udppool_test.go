package mx_test

import (
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/kumogo/kumogo/queue/egress/mx"
)

// rawServer is a UDP name server on 127.0.0.1 that answers every A query
// with 192.0.2.1 through answer, which may change or hold back the reply,
// and records the source address of each query.
type rawServer struct {
	addr string
	mu   sync.Mutex
	srcs map[string]int
	n    int
}

// startRaw serves until the test ends. answer gets the query's sequence
// number (from 1), the query and the proper reply, and returns the
// replies to send, in order.
func startRaw(t *testing.T, answer func(n int, q, r *dns.Msg) []*dns.Msg) *rawServer {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	s := &rawServer{addr: pc.LocalAddr().String(), srcs: make(map[string]int)}
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			q := new(dns.Msg)
			if q.Unpack(buf[:n]) != nil || len(q.Question) != 1 {
				continue
			}
			s.mu.Lock()
			s.srcs[from.String()]++
			s.n++
			seq := s.n
			s.mu.Unlock()
			r := new(dns.Msg)
			r.SetReply(q)
			rr, _ := dns.NewRR(q.Question[0].Name + " 300 IN A 192.0.2.1")
			if q.Question[0].Qtype == dns.TypeA {
				r.Answer = append(r.Answer, rr)
			}
			go func() {
				for _, m := range answer(seq, q, r) {
					b, _ := m.Pack()
					pc.WriteTo(b, from)
				}
			}()
		}
	}()
	return s
}

func (s *rawServer) sources() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.srcs)
}

func plain(_ int, _, r *dns.Msg) []*dns.Msg { return []*dns.Msg{r} }

// Sequential queries share one socket instead of opening one each, and a
// socket is replaced after at most 100 queries so that the source port
// still changes.
func TestUDPSocketsReused(t *testing.T) {
	s := startRaw(t, plain)
	r := ok(mx.NewResolver([]string{s.addr}, mx.Options{Timeout: 2 * time.Second}))(t)
	defer r.Close()
	for i := range 250 {
		addrs := ok(r.LookupAddr(ctx(t), fmt.Sprintf("h%d.example.", i), mx.Ipv4Only))(t)
		if len(addrs) != 1 || addrs[0].String() != "192.0.2.1" {
			t.Fatalf("h%d: %v", i, addrs)
		}
	}
	if n := s.sources(); n != 3 {
		t.Errorf("250 sequential queries came from %d source ports, want 3 (a socket serves 100)", n)
	}
}

// Concurrent lookups each get a socket of their own; afterwards the sockets
// are kept (bounded) and reused.
func TestUDPSocketsConcurrent(t *testing.T) {
	s := startRaw(t, func(_ int, _, r *dns.Msg) []*dns.Msg {
		time.Sleep(5 * time.Millisecond)
		return []*dns.Msg{r}
	})
	r := ok(mx.NewResolver([]string{s.addr}, mx.Options{Timeout: 2 * time.Second}))(t)
	defer r.Close()
	for round := range 3 {
		var wg sync.WaitGroup
		for i := range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				name := fmt.Sprintf("r%d-%d.example.", round, i)
				if a, err := r.LookupAddr(ctx(t), name, mx.Ipv4Only); err != nil || len(a) != 1 {
					t.Errorf("%s: %v %v", name, a, err)
				}
			}()
		}
		wg.Wait()
	}
	if n := s.sources(); n < 2 || n > 40 {
		t.Errorf("60 queries in 3 rounds of 20 came from %d source ports, want between 2 and 40", n)
	}
}

// A reused socket takes only the answer to its own query: a reply with
// another ID (a late answer to an earlier query) is skipped, and one that
// carries the query's ID but another question is refused.
func TestUDPAnswerMatching(t *testing.T) {
	s := startRaw(t, func(n int, q, r *dns.Msg) []*dns.Msg {
		stray := r.Copy()
		stray.Id = q.Id + 1
		stray.Answer[0].(*dns.A).A = net.IPv4(192, 0, 2, 99)
		if n == 2 {
			// the query's ID, a forged question and answer
			forged := r.Copy()
			forged.Question[0].Name = "evil.example."
			forged.Answer[0].Header().Name = "evil.example."
			forged.Answer[0].(*dns.A).A = net.IPv4(192, 0, 2, 66)
			return []*dns.Msg{forged}
		}
		return []*dns.Msg{stray, r}
	})
	r := ok(mx.NewResolver([]string{s.addr}, mx.Options{Timeout: 300 * time.Millisecond, Attempts: 2}))(t)
	defer r.Close()
	for _, name := range []string{"a.example.", "b.example.", "c.example."} {
		addrs := ok(r.LookupAddr(ctx(t), name, mx.Ipv4Only))(t)
		if len(addrs) != 1 || addrs[0].String() != "192.0.2.1" {
			t.Errorf("%s: %v, want 192.0.2.1", name, addrs)
		}
	}
}

// A query that times out closes its socket: the late answer never reaches
// the next query, which gets a fresh socket and its own answer.
func TestUDPTimeoutDropsSocket(t *testing.T) {
	s := startRaw(t, func(n int, _, r *dns.Msg) []*dns.Msg {
		if n == 1 {
			time.Sleep(300 * time.Millisecond)
		}
		return []*dns.Msg{r}
	})
	r := ok(mx.NewResolver([]string{s.addr}, mx.Options{Timeout: 100 * time.Millisecond, Attempts: 1}))(t)
	defer r.Close()
	if _, err := r.LookupAddr(ctx(t), "slow.example.", mx.Ipv4Only); err == nil {
		t.Fatal("the first query did not time out")
	}
	addrs := ok(r.LookupAddr(ctx(t), "next.example.", mx.Ipv4Only))(t)
	if len(addrs) != 1 {
		t.Fatalf("next: %v", addrs)
	}
	if n := s.sources(); n != 2 {
		t.Errorf("%d source ports, want 2 (the timed-out socket is not reused)", n)
	}
}
