package mx

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// LookupPTR returns the PTR names of ip (with their trailing dots), as
// kumo.dns.lookup_ptr does; an address without PTR records gives an
// empty list.
func (r *Resolver) LookupPTR(ctx context.Context, ip netip.Addr) ([]string, error) {
	name, err := dns.ReverseAddr(ip.Unmap().String())
	if err != nil {
		return nil, fmt.Errorf("mx: reverse name of %s: %w", ip, err)
	}
	return r.lookupStrings(ctx, name, dns.TypePTR, func(rr dns.RR) string { return rr.(*dns.PTR).Ptr })
}

// LookupTXT returns the TXT records of name, each one string (its
// character-strings joined).
func (r *Resolver) LookupTXT(ctx context.Context, host string) ([]string, error) {
	name, err := fqdn(host)
	if err != nil {
		return nil, err
	}
	return r.lookupStrings(ctx, name, dns.TypeTXT, func(rr dns.RR) string { return strings.Join(rr.(*dns.TXT).Txt, "") })
}

func (r *Resolver) lookupStrings(ctx context.Context, name string, qtype uint16, text func(dns.RR) string) ([]string, error) {
	v, err := r.cached(ctx, cacheKey{name, qtype}, func(ctx context.Context) (any, time.Duration, error) {
		ans, err := r.query(ctx, name, qtype)
		if err != nil {
			return nil, r.failureTTL(), fmt.Errorf("mx: lookup %s %s: %w", name, dns.TypeToString[qtype], err)
		}
		if ans.nx {
			return []string(nil), ans.negTTL, fmt.Errorf("mx: lookup %s %s: %w", name, dns.TypeToString[qtype], ErrNXDOMAIN)
		}
		out := make([]string, 0, len(ans.rrs))
		for _, rr := range ans.rrs {
			out = append(out, text(rr))
		}
		ttl := ans.ttl
		if len(out) == 0 {
			ttl = ans.negTTL
		}
		return out, ttl, nil
	})
	out, _ := v.([]string)
	return out, err
}
