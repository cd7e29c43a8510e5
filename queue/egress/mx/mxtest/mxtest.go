// Package mxtest runs a fake authoritative-and-recursive DNS server on
// 127.0.0.1 (UDP and TCP on the same port) that answers from a Go map of
// zone records, so that tests never depend on the machine's resolver or
// send a query off the machine. It counts the queries it receives.
package mxtest

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"
)

// Server is a running fake DNS server.
type Server struct {
	// Addr is "127.0.0.1:port", for both UDP and TCP.
	Addr string

	mu        sync.Mutex
	rrs       map[string][]dns.RR // by lower-case FQDN
	truncate  map[string]bool     // names answered with TC over UDP
	servfail  map[string]bool
	silent    map[string]bool // names whose queries get no answer at all
	queries   map[string]int  // "name TYPE proto" → count
	udp, tcp  *dns.Server
	negTTL    uint32
	closeOnce sync.Once
}

// Start serves records, given in zone-file syntax ("example.com. 300 IN MX
// 10 mx1.example.com."), until the test ends. A name with no records at all
// is NXDOMAIN; a name with records of other types only gives an empty
// NOERROR answer. Both carry a SOA with a 60 s minimum in the authority
// section.
func Start(tb testing.TB, records ...string) *Server {
	tb.Helper()
	s := &Server{
		rrs:      make(map[string][]dns.RR),
		truncate: make(map[string]bool),
		servfail: make(map[string]bool),
		silent:   make(map[string]bool),
		queries:  make(map[string]int),
		negTTL:   60,
	}
	for _, r := range records {
		if err := s.Add(r); err != nil {
			tb.Fatal(err)
		}
	}
	pc, ln, err := listenPair()
	if err != nil {
		tb.Fatalf("mxtest: %v", err)
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
	tb.Cleanup(s.Close)
	return s
}

// listenPair binds TCP and UDP on the same free loopback port. TCP is
// bound first: its ephemeral ports are the crowded ones (client
// connections of other tests use them), so the UDP bind rarely fails.
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
	return nil, nil, fmt.Errorf("listen udp: %w", lastErr)
}

// Add adds one record in zone-file syntax.
func (s *Server) Add(record string) error {
	rr, err := dns.NewRR(record)
	if err != nil {
		return fmt.Errorf("mxtest: record %q: %w", record, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	name := strings.ToLower(rr.Header().Name)
	s.rrs[name] = append(s.rrs[name], rr)
	return nil
}

// Remove deletes every record of name.
func (s *Server) Remove(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.rrs, strings.ToLower(dns.Fqdn(name)))
}

// Truncate makes UDP answers for name empty with the TC bit set, so that
// clients must retry over TCP.
func (s *Server) Truncate(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.truncate[strings.ToLower(dns.Fqdn(name))] = true
}

// ServFail makes every answer for name SERVFAIL.
func (s *Server) ServFail(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.servfail[strings.ToLower(dns.Fqdn(name))] = true
}

// Silence makes the server drop every query for name without answering,
// as a dead resolver would, until Answer is called.
func (s *Server) Silence(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.silent[strings.ToLower(dns.Fqdn(name))] = true
}

// Answer undoes Silence.
func (s *Server) Answer(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.silent, strings.ToLower(dns.Fqdn(name)))
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

// Close stops the server.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		_ = s.udp.Shutdown()
		_ = s.tcp.Shutdown()
	})
}

func (s *Server) serve(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.RecursionAvailable = true
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		_ = w.WriteMsg(m)
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
	rrs, exists := s.rrs[name]
	rrs = append([]dns.RR(nil), rrs...)
	trunc := s.truncate[name] && proto == "udp"
	fail := s.servfail[name]
	silent := s.silent[name]
	s.mu.Unlock()
	if silent {
		return
	}

	switch {
	case fail:
		m.Rcode = dns.RcodeServerFailure
	case trunc:
		m.Truncated = true
	case !exists:
		m.Rcode = dns.RcodeNameError
		m.Ns = append(m.Ns, s.soa(name))
	default:
		for _, rr := range rrs {
			if rr.Header().Rrtype == q.Qtype {
				m.Answer = append(m.Answer, dns.Copy(rr))
			}
		}
		if len(m.Answer) == 0 {
			m.Ns = append(m.Ns, s.soa(name))
		}
	}
	_ = w.WriteMsg(m)
}

func (s *Server) soa(name string) dns.RR {
	zone := name
	if i := strings.IndexByte(name, '.'); i >= 0 && i+1 < len(name) {
		zone = name[i+1:]
	}
	return &dns.SOA{
		Hdr:     dns.RR_Header{Name: zone, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: s.negTTL},
		Ns:      "ns." + zone,
		Mbox:    "hostmaster." + zone,
		Serial:  1,
		Refresh: 3600, Retry: 600, Expire: 86400,
		Minttl: s.negTTL,
	}
}
