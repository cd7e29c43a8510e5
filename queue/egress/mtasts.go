package egress

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/mtasts"
	"github.com/kumogo/kumogo/queue/egress/mx"
)

// MTA-STS (RFC 8461) works in two places, as in KumoMTA (its pages
// kumo.dns.set_mta_sts_enabled and make_egress_path/enable_mta_sts):
// during resolution, the policy of the routing domain removes the MX hosts
// it does not list (so the site name reflects the permitted hosts, and a
// domain whose policy permits none of its hosts fails to resolve and keeps
// to itself instead of joining a shared site); when connecting, the egress
// path's enable_mta_sts lets the policy's mode raise TLS, unless DANE
// already pinned the host (dane.go).

// PolicySource gives the MTA-STS policy of a domain (nil: none);
// *mtasts.Fetcher is one.
type PolicySource interface {
	Get(ctx context.Context, domain string) (*mtasts.Policy, error)
}

// resolveSTS applies the MTA-STS policy of plan's domain to a plan made
// from MX records: enforce keeps only the hosts the policy lists, and
// none kept is an error that the queue records as "451 4.4.4 failed to
// resolve queue ...: MTA-STS enforce policy for ...", KumoMTA's text. The
// policy's mode travels in the plan. A policy that cannot be had is no
// policy (RFC 8461 section 5.1).
func resolveSTS(ctx context.Context, src PolicySource, plan *mx.ConnectionPlan) (*mx.ConnectionPlan, error) {
	if plan.MX == nil || plan.MX.IsDomainLiteral {
		return plan, nil
	}
	domain := strings.TrimSuffix(plan.MX.DomainName, ".")
	pol, _ := src.Get(ctx, domain)
	if pol == nil {
		return plan, nil
	}
	out := plan
	if pol.Mode == mtasts.ModeEnforce {
		kept, ok := plan.Restrict(pol.Matches)
		if !ok {
			return nil, fmt.Errorf("MTA-STS enforce policy for %s permits none of its MX hosts %s; allowed mx patterns: %s. The destination is undeliverable until its MTA-STS policy is corrected.",
				domain, debugList(plan.MX.Hosts), debugList(pol.MX))
		}
		if len(kept.Candidates) == 0 {
			return nil, &mx.Failure{Code: 451, Text: mx.TextNoHosts}
		}
		out = kept
	}
	if out == plan {
		cp := *plan
		out = &cp
	}
	out.STSMode = pol.Mode
	return out, nil
}

// debugList renders a list as KumoMTA's texts do: ["a", "b"].
func debugList(s []string) string {
	q := make([]string, len(s))
	for i, x := range s {
		q[i] = strconv.Quote(x)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// stsPosture raises the path's TLS for the MTA-STS mode found during
// resolution, when the path has enable_mta_sts (KumoMTA's default):
// enforce makes TLS Required with verified certificates; testing raises
// Disabled to OpportunisticInsecure and never lowers anything (so a
// STARTTLS made mandatory by unusable DANE records stays mandatory).
func stsPosture(mode string, p *config.EgressPath) *config.EgressPath {
	if !p.EnableMTASTS {
		return p
	}
	switch {
	case mode == mtasts.ModeEnforce && p.EnableTLS != TLSRequired:
		raised := *p
		raised.EnableTLS = TLSRequired
		return &raised
	case mode == mtasts.ModeTesting && p.EnableTLS == TLSDisabled:
		raised := *p
		raised.EnableTLS = TLSOpportunisticInsecure
		return &raised
	}
	return p
}
