// Package dnszone answers DNS queries from zone records on a loopback
// socket, in process: kumo.dns.configure_test_resolver (KumoMTA's
// hermetic resolver for users' own tests) points the resolver at it, and
// kumogo's own tests use it (through queue/egress/mx/mxtest) as the fake
// DNS server that keeps them off the machine's resolver, with records
// added and removed while it runs, faults (truncation, SERVFAIL, silence)
// and a count of the queries it got.
package dnszone

import (
	"fmt"
	"strings"
	"sync"

	"github.com/miekg/dns"
)

// Zones holds records by owner name.
type Zones struct {
	mu     sync.RWMutex
	byName map[string][]dns.RR // lower-case FQDN

	// AD sets the AD bit on every answer, as a DNSSEC-validating resolver
	// would (DANE tests).
	AD bool
	// NegativeTTL, when set, puts a SOA with that TTL and minimum in the
	// authority section of negative answers (for the negative caching of
	// RFC 2308) and sets RA, as a recursive resolver's answers have.
	NegativeTTL uint32
}

// New returns empty zones.
func New() *Zones { return &Zones{byName: make(map[string][]dns.RR)} }

// Parse reads zone texts in the master-file format ($ORIGIN, $TTL,
// relative names, @). A zone without $ORIGIN is rooted at ".".
func Parse(texts []string) (*Zones, error) {
	z := New()
	for i, text := range texts {
		zp := dns.NewZoneParser(strings.NewReader(text), ".", fmt.Sprintf("zone %d", i+1))
		zp.SetDefaultTTL(300)
		for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
			z.add(rr)
		}
		if err := zp.Err(); err != nil {
			return nil, fmt.Errorf("zone %d: %w", i+1, err)
		}
	}
	return z, nil
}

// Add adds one record in zone-file syntax ("example.com. 300 IN MX 10
// mx1.example.com.").
func (z *Zones) Add(record string) error {
	rr, err := dns.NewRR(record)
	if err != nil {
		return fmt.Errorf("dnszone: record %q: %w", record, err)
	}
	if rr == nil {
		return fmt.Errorf("dnszone: record %q: empty", record)
	}
	z.add(rr)
	return nil
}

func (z *Zones) add(rr dns.RR) {
	name := strings.ToLower(rr.Header().Name)
	z.mu.Lock()
	z.byName[name] = append(z.byName[name], rr)
	z.mu.Unlock()
}

// Remove deletes every record of name.
func (z *Zones) Remove(name string) {
	z.mu.Lock()
	delete(z.byName, strings.ToLower(dns.Fqdn(name)))
	z.mu.Unlock()
}

// answer fills resp for one question: the records of that type, a CNAME
// (followed within the zones), NOERROR with no answer for a name that
// has other records or children, NXDOMAIN otherwise; with NegativeTTL a
// negative answer carries a SOA.
func (z *Zones) answer(resp *dns.Msg, q dns.Question) {
	z.mu.RLock()
	defer z.mu.RUnlock()
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
			if len(resp.Answer) == 0 && z.NegativeTTL > 0 {
				resp.Ns = append(resp.Ns, z.soa(name))
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

// soa is the SOA of a negative answer for name: its parent as the zone.
func (z *Zones) soa(name string) dns.RR {
	zone := name
	if i := strings.IndexByte(name, '.'); i >= 0 && i+1 < len(name) {
		zone = name[i+1:]
	}
	return &dns.SOA{
		Hdr:     dns.RR_Header{Name: zone, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: z.NegativeTTL},
		Ns:      "ns." + zone,
		Mbox:    "hostmaster." + zone,
		Serial:  1,
		Refresh: 3600, Retry: 600, Expire: 86400,
		Minttl: z.NegativeTTL,
	}
}
