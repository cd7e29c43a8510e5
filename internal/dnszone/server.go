package dnszone

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"

	"github.com/miekg/dns"
)

// Server answers queries from Zones over UDP and TCP on 127.0.0.1.
type Server struct {
	Addr string // "127.0.0.1:port", the same port for UDP and TCP
	*Zones

	udp  *dns.Server
	tcp  *dns.Server
	once sync.Once

	mu       sync.Mutex
	truncate map[string]bool // names answered with TC over UDP
	servfail map[string]bool
	silent   map[string]bool // names whose queries get no answer at all
	queries  map[string]int  // "name TYPE proto" → count
}

// Serve starts a server for z on an ephemeral loopback port.
func Serve(z *Zones) (*Server, error) {
	s := &Server{Zones: z, truncate: map[string]bool{}, servfail: map[string]bool{},
		silent: map[string]bool{}, queries: map[string]int{}}
	pc, ln, err := listenPair()
	if err != nil {
		return nil, fmt.Errorf("dnszone: %w", err)
	}
	s.Addr = pc.LocalAddr().String()
	started := make(chan struct{}, 2)
	notify := func() { started <- struct{}{} }
	s.udp = &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(s.serve), NotifyStartedFunc: notify}
	s.tcp = &dns.Server{Listener: ln, Handler: dns.HandlerFunc(s.serve), NotifyStartedFunc: notify}
	go func() { _ = s.udp.ActivateAndServe() }()
	go func() { _ = s.tcp.ActivateAndServe() }()
	<-started
	<-started
	return s, nil
}

// listenPair binds TCP and UDP on the same free loopback port. TCP is
// bound first: its ephemeral ports are the crowded ones (the other
// tests' client connections use them too), UDP's are nearly all free, so
// the UDP bind on the same port rarely fails.
func listenPair() (net.PacketConn, net.Listener, error) {
	var lastErr error
	for range 50 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, nil, fmt.Errorf("listen tcp: %w", err)
		}
		pc, err := net.ListenPacket("udp", ln.Addr().String())
		if err == nil {
			return pc, ln, nil
		}
		ln.Close()
		lastErr = err
	}
	return nil, nil, fmt.Errorf("no port free for both UDP and TCP: %w", lastErr)
}

// Close stops the server.
func (s *Server) Close() error {
	var err error
	s.once.Do(func() {
		err = errors.Join(s.udp.Shutdown(), s.tcp.Shutdown())
	})
	return err
}

// Truncate makes UDP answers for name empty with the TC bit set, so that
// clients must retry over TCP.
func (s *Server) Truncate(name string) { s.set(s.truncate, name, true) }

// ServFail makes every answer for name SERVFAIL.
func (s *Server) ServFail(name string) { s.set(s.servfail, name, true) }

// Silence makes the server drop every query for name without answering,
// as a dead resolver would, until Answer is called.
func (s *Server) Silence(name string) { s.set(s.silent, name, true) }

// Answer undoes Silence.
func (s *Server) Answer(name string) { s.set(s.silent, name, false) }

func (s *Server) set(m map[string]bool, name string, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if on {
		m[strings.ToLower(dns.Fqdn(name))] = true
	} else {
		delete(m, strings.ToLower(dns.Fqdn(name)))
	}
}

// Queries counts the queries received for name and qtype ("MX", "A",
// "AAAA"); proto is "udp", "tcp" or "" for both.
func (s *Server) Queries(name, qtype, proto string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := strings.ToLower(dns.Fqdn(name)) + " " + qtype
	if proto != "" {
		return s.queries[key+" "+proto]
	}
	return s.queries[key+" udp"] + s.queries[key+" tcp"]
}

// Total counts every query received.
func (s *Server) Total() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.queries {
		n += c
	}
	return n
}

func (s *Server) serve(w dns.ResponseWriter, req *dns.Msg) {
	resp := new(dns.Msg)
	resp.SetReply(req)
	resp.Authoritative = true
	resp.AuthenticatedData = s.AD
	resp.RecursionAvailable = s.NegativeTTL > 0
	if len(req.Question) != 1 {
		resp.Rcode = dns.RcodeFormatError
		_ = w.WriteMsg(resp)
		return
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	proto := "udp"
	if _, ok := w.RemoteAddr().(*net.TCPAddr); ok {
		proto = "tcp"
	}
	s.mu.Lock()
	s.queries[name+" "+dns.TypeToString[q.Qtype]+" "+proto]++
	trunc := s.truncate[name] && proto == "udp"
	fail := s.servfail[name]
	silent := s.silent[name]
	s.mu.Unlock()
	switch {
	case silent:
		return
	case fail:
		resp.Rcode = dns.RcodeServerFailure
	case trunc:
		resp.Truncated = true
	default:
		s.answer(resp, q)
	}
	_ = w.WriteMsg(resp)
}
