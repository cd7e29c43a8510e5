package mx

import (
	"context"
	"net/netip"
	"time"

	"github.com/miekg/dns"
)

// DNSSEC status of a connection plan, for DANE (RFC 7672 section 2.2 and
// KumoMTA's make_egress_path/enable_dane page): DANE applies to a host
// only when its selection is trusted (a validated MX answer, or an
// mx_list with treat_mx_list_as_secure) and its addresses are validated
// too, or the host is a securely published CNAME whose target lands in an
// unsigned zone (the TLSA records at the original name authenticate the
// peer then). A resolver that validates says so with the AD bit.

// SecureSelection reports whether the plan's hosts were selected
// securely: a DNSSEC-validated MX answer (never a domain literal), or an
// mx_list the queue declares trusted.
func (p *ConnectionPlan) SecureSelection() bool {
	if p.MX != nil {
		return p.MX.IsSecure && !p.MX.IsDomainLiteral
	}
	return p.TreatListAsSecure
}

// lookupHost resolves host's addresses per strategy and reports whether
// they are DNSSEC-validated (see above). A failed CNAME check only costs
// DANE, never the addresses.
func (r *Resolver) lookupHost(ctx context.Context, host, strategy string) ([]netip.Addr, bool, error) {
	addrs, secure, err := r.lookupAddr(ctx, host, strategy)
	if err != nil || len(addrs) == 0 || secure {
		return addrs, secure, err
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return addrs, false, nil
	}
	return addrs, r.secureAlias(ctx, host), nil
}

// secureAlias reports whether host is a CNAME published with the AD bit.
// The query is of type CNAME, so that its answer is the alias RRset alone,
// not the chain into the target's zone.
func (r *Resolver) secureAlias(ctx context.Context, host string) bool {
	name, err := fqdn(host)
	if err != nil || isLocalhost(name) {
		return false
	}
	v, err := r.cached(ctx, cacheKey{name, dns.TypeCNAME}, func(ctx context.Context) (any, time.Duration, error) {
		ans, err := r.query(ctx, name, dns.TypeCNAME)
		if err != nil {
			return false, r.failureTTL(), nil // not known to be secure
		}
		if len(ans.rrs) == 0 {
			return false, ans.negTTL, nil
		}
		return ans.secure, ans.ttl, nil
	})
	secure, _ := v.(bool)
	return err == nil && secure
}
