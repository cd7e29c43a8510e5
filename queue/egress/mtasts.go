package egress

import (
	"context"
	"strings"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/mtasts"
	"github.com/kumogo/kumogo/internal/smtpreply"
	"github.com/kumogo/kumogo/queue/egress/mx"
)

// PolicySource gives the MTA-STS policy of a domain (nil: none);
// *mtasts.Fetcher is one.
type PolicySource interface {
	Get(ctx context.Context, domain string) (*mtasts.Policy, error)
}

// applySTS applies the MTA-STS policy of the plan's domain when the path
// has enable_mta_sts (KumoMTA's default) and the plan comes from MX
// records: in enforce mode only the MX hosts the policy lists are tried,
// with TLS Required (certificates verified); none left is a
// TransientFailure naming the policy. In testing mode a path with TLS
// Disabled tries OpportunisticInsecure (KumoMTA's enable_mta_sts page);
// none changes nothing. A policy that cannot be had is no policy (RFC
// 8461 section 5.1).
func (d *Dialer) applySTS(ctx context.Context, plan *mx.ConnectionPlan, p *config.EgressPath) (*mx.ConnectionPlan, *config.EgressPath, error) {
	if d.STS == nil || !p.EnableMTASTS || plan.MX == nil || plan.MX.IsDomainLiteral {
		return plan, p, nil
	}
	domain := strings.TrimSuffix(plan.MX.DomainName, ".")
	pol, _ := d.STS.Get(ctx, domain)
	if pol != nil && pol.Mode == mtasts.ModeTesting && p.EnableTLS == TLSDisabled {
		raised := *p
		raised.EnableTLS = TLSOpportunisticInsecure
		return plan, &raised, nil
	}
	if pol == nil || pol.Mode != mtasts.ModeEnforce {
		return plan, p, nil
	}
	kept := *plan
	kept.Candidates = nil
	var refused []string
	for _, c := range plan.Candidates {
		if pol.Matches(c.Name) {
			kept.Candidates = append(kept.Candidates, c)
		} else {
			refused = append(refused, strings.TrimSuffix(c.Name, "."))
		}
	}
	if len(kept.Candidates) == 0 {
		return nil, nil, &smtpreply.Error{Response: smtpreply.Response{Code: 400,
			Content: "KumoMTA internal: " + pol.String() + " of " + domain + " allows none of the MX hosts " + strings.Join(dedupe(refused), ", ")}}
	}
	required := *p
	required.EnableTLS = TLSRequired
	return &kept, &required, nil
}

func dedupe(s []string) []string {
	var out []string
	for _, x := range s {
		if len(out) == 0 || out[len(out)-1] != x {
			out = append(out, x)
		}
	}
	return out
}
