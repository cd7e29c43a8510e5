// Command fakedns is the many-destination scenario's name server: for
// every domain d<i>.<zone> it answers an MX of its own, mx.d<i>.<zone>,
// whose A record is a loopback address, so that a relay resolving mail for
// thousands of domains reaches one sink (bench/baresink --addrs) on many
// addresses. Domain i's MX gets address i % --addrs: index 0 is 127.0.0.1,
// index k > 0 is 127.1.(k/250).(1+k%250), bench/baresink's numbering.
// Other record types of names in the zone are answered empty (NODATA);
// names outside it get NXDOMAIN. It listens on loopback only (UDP and TCP,
// same port) and prints "listening on <addr>" on stderr when ready.
//
//	fakedns --listen 127.0.0.1:0 --zone bench.test --addrs 1000
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/miekg/dns"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "loopback address to serve on (UDP and TCP)")
	zone := flag.String("zone", "bench.test", "the zone whose d<i> domains get MX hosts")
	addrs := flag.Int("addrs", 1, "how many loopback addresses the MX hosts are spread over")
	ttl := flag.Uint("ttl", 300, "TTL of the answers, seconds")
	flag.Parse()
	host, _, err := net.SplitHostPort(*listen)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() || *addrs < 1 {
		fmt.Fprintln(os.Stderr, "fakedns: --listen must be a loopback ip:port and --addrs at least 1")
		os.Exit(2)
	}
	z := dns.Fqdn(strings.ToLower(*zone))
	h := handler{zone: z, addrs: *addrs, ttl: uint32(*ttl)}
	pc, err := net.ListenPacket("udp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fakedns:", err)
		os.Exit(1)
	}
	// TCP on the same port, for truncated answers
	ln, err := net.Listen("tcp", pc.LocalAddr().String())
	if err != nil {
		fmt.Fprintln(os.Stderr, "fakedns:", err)
		os.Exit(1)
	}
	go (&dns.Server{PacketConn: pc, Handler: h}).ActivateAndServe()
	go (&dns.Server{Listener: ln, Handler: h}).ActivateAndServe()
	fmt.Fprintf(os.Stderr, "listening on %s\n", pc.LocalAddr())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	<-sigs
}

type handler struct {
	zone  string
	addrs int
	ttl   uint32
}

// index returns i for d<i>.<zone> (mx false) or mx.d<i>.<zone> (mx true).
func (h handler) index(name string) (i int, mx, ok bool) {
	rest, found := strings.CutSuffix(name, "."+h.zone)
	if !found {
		return 0, false, false
	}
	if r, isMX := strings.CutPrefix(rest, "mx."); isMX {
		rest, mx = r, true
	}
	d, found := strings.CutPrefix(rest, "d")
	if !found {
		return 0, false, false
	}
	n, err := strconv.Atoi(d)
	if err != nil || n < 0 {
		return 0, false, false
	}
	return n, mx, true
}

func addrOf(k int) string {
	if k == 0 {
		return "127.0.0.1"
	}
	return fmt.Sprintf("127.1.%d.%d", k/250, 1+k%250)
}

func (h handler) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if len(req.Question) == 1 {
		q := req.Question[0]
		name := strings.ToLower(q.Name)
		i, mx, ok := h.index(name)
		hdr := dns.RR_Header{Name: q.Name, Class: dns.ClassINET, Ttl: h.ttl}
		switch {
		case !ok && name != h.zone && !strings.HasSuffix(name, "."+h.zone):
			m.Rcode = dns.RcodeNameError
		case ok && !mx && q.Qtype == dns.TypeMX:
			hdr.Rrtype = dns.TypeMX
			m.Answer = append(m.Answer, &dns.MX{Hdr: hdr, Preference: 10, Mx: "mx." + name})
		case ok && mx && q.Qtype == dns.TypeA:
			hdr.Rrtype = dns.TypeA
			m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: net.ParseIP(addrOf(i % h.addrs))})
		}
	}
	w.WriteMsg(m)
}
