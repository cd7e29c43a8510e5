package mx

import (
	"context"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"

	"github.com/miekg/dns"
)

// TLSA is one TLSA record (RFC 6698): certificate usage, selector,
// matching type and the association data.
type TLSA struct {
	Usage, Selector, MatchingType uint8
	Data                          []byte
}

type tlsaAnswer struct {
	recs   []TLSA
	secure bool
}

// LookupTLSA returns the TLSA records of host's SMTP service on port
// ("_port._tcp.host") and whether the resolver vouched for them with the
// AD bit. A name without records gives none and no error.
func (r *Resolver) LookupTLSA(ctx context.Context, host string, port int) ([]TLSA, bool, error) {
	h, err := fqdn(host)
	if err != nil {
		return nil, false, err
	}
	name := "_" + strconv.Itoa(port) + "._tcp." + h
	v, err := r.cached(ctx, cacheKey{name, dns.TypeTLSA}, func(ctx context.Context) (any, time.Duration, error) {
		ans, err := r.query(ctx, name, dns.TypeTLSA)
		if err != nil {
			return nil, r.failureTTL(), fmt.Errorf("mx: lookup %s TLSA: %w", name, err)
		}
		out := &tlsaAnswer{secure: ans.secure}
		for _, rr := range ans.rrs {
			t := rr.(*dns.TLSA)
			data, err := hex.DecodeString(t.Certificate)
			if err != nil {
				continue
			}
			out.recs = append(out.recs, TLSA{Usage: t.Usage, Selector: t.Selector, MatchingType: t.MatchingType, Data: data})
		}
		ttl := ans.ttl
		if len(out.recs) == 0 {
			ttl = ans.negTTL
		}
		return out, ttl, nil
	})
	if err != nil {
		return nil, false, err
	}
	a := v.(*tlsaAnswer)
	return a.recs, a.secure, nil
}
