// Package dnszone answers DNS queries from zone text on a loopback
// socket, in process: kumo.dns.configure_test_resolver (KumoMTA's
// hermetic resolver for users' own tests) points the resolver at it.
package dnszone

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"

	"github.com/miekg/dns"
)

// Zones holds the records of parsed zone texts, by owner name.
type Zones struct {
	byName map[string][]dns.RR // lower-case FQDN
	// AD sets the AD bit on every answer, as a DNSSEC-validating resolver
	// would (DANE tests).
	AD bool
}

// Parse reads zone texts in the master-file format ($ORIGIN, $TTL,
// relative names, @). A zone without $ORIGIN is rooted at ".".
func Parse(texts []string) (*Zones, error) {
	z := &Zones{byName: make(map[string][]dns.RR)}
	for i, text := range texts {
		zp := dns.NewZoneParser(strings.NewReader(text), ".", fmt.Sprintf("zone %d", i+1))
		zp.SetDefaultTTL(300)
		for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
			name := strings.ToLower(rr.Header().Name)
			z.byName[name] = append(z.byName[name], rr)
		}
		if err := zp.Err(); err != nil {
			return nil, fmt.Errorf("zone %d: %w", i+1, err)
		}
	}
	return z, nil
}

// answer fills resp for one question: the records of that type, a CNAME
// (followed within the zones), NOERROR with no answer for a name that
// has other records or children, NXDOMAIN otherwise.
func (z *Zones) answer(resp *dns.Msg, q dns.Question) {
	name := strings.ToLower(q.Name)
	for hops := 0; hops < 8; hops++ {
		rrs, exists := z.byName[name]
		var cname dns.RR
		for _, rr := range rrs {
			switch {
			case rr.Header().Rrtype == q.Qtype || q.Qtype == dns.TypeANY:
				resp.Answer = append(resp.Answer, rr)
			case rr.Header().Rrtype == dns.TypeCNAME:
				cname = rr
			}
		}
		if len(resp.Answer) > 0 || cname == nil {
			if !exists && len(resp.Answer) == 0 && !z.hasChildren(name) {
				resp.Rcode = dns.RcodeNameError
			}
			return
		}
		resp.Answer = append(resp.Answer, cname)
		name = strings.ToLower(cname.(*dns.CNAME).Target)
	}
}

func (z *Zones) hasChildren(name string) bool {
	for n := range z.byName {
		if strings.HasSuffix(n, "."+name) {
			return true
		}
	}
	return false
}

// Server answers queries from Zones over UDP and TCP on 127.0.0.1.
type Server struct {
	Addr string // "127.0.0.1:port", the same port for UDP and TCP
	udp  *dns.Server
	tcp  *dns.Server
	once sync.Once
}

// Serve starts a server for z on an ephemeral loopback port.
func Serve(z *Zones) (*Server, error) {
	h := dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		resp := new(dns.Msg)
		resp.SetReply(req)
		resp.Authoritative = true
		resp.AuthenticatedData = z.AD
		for _, q := range req.Question {
			z.answer(resp, q)
		}
		_ = w.WriteMsg(resp)
	})
	var lastErr error
	// The TCP port is taken first: TCP's ephemeral ports are the crowded
	// ones (the other tests' client connections use them too), UDP's are
	// nearly all free, so the UDP bind on the same port rarely fails.
	for attempt := 0; attempt < 50; attempt++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("dnszone: %w", err)
		}
		pc, err := net.ListenPacket("udp", ln.Addr().String())
		if err != nil {
			ln.Close()
			lastErr = err
			continue
		}
		s := &Server{Addr: pc.LocalAddr().String(),
			udp: &dns.Server{PacketConn: pc, Handler: h},
			tcp: &dns.Server{Listener: ln, Handler: h}}
		started := make(chan struct{}, 2)
		s.udp.NotifyStartedFunc = func() { started <- struct{}{} }
		s.tcp.NotifyStartedFunc = func() { started <- struct{}{} }
		go func() { _ = s.udp.ActivateAndServe() }()
		go func() { _ = s.tcp.ActivateAndServe() }()
		<-started
		<-started
		return s, nil
	}
	return nil, fmt.Errorf("dnszone: no port free for both UDP and TCP: %w", errors.Join(lastErr))
}

// Close stops the server.
func (s *Server) Close() error {
	var err error
	s.once.Do(func() {
		err = errors.Join(s.udp.Shutdown(), s.tcp.Shutdown())
	})
	return err
}
