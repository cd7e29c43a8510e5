package shaping

import "context"

// AutomationRules returns the raw automation rules (tables as decoded from
// the files, checked by parseAutomation) that apply to a delivery to domain
// via the MX site site, in the order KumoMTA's tsa-daemon considers them:
// "default", the providers matching domain, the site block, then the domain
// block (kumo.shaping.load page, "Traffic Shaping Automation Rules").
// Rollup is true for rules from "default" and the site block: their effects
// are keyed by site rather than by domain.
func (s *Shaping) AutomationRules(ctx context.Context, domain, site string) []AutomationRule {
	var out []AutomationRule
	add := func(e *entry, rollup bool) {
		if e == nil {
			return
		}
		for _, r := range e.automation {
			if m, ok := r.(map[string]any); ok {
				out = append(out, AutomationRule{Fields: m, Rollup: rollup})
			}
		}
	}
	add(s.byDomain.get("default"), true)
	if isDomainName(domain) {
		for _, name := range s.byProvider.keys {
			p := s.byProvider.m[name]
			if s.providerMatches(ctx, name, p, domain) {
				add(p, false)
			}
		}
	}
	if site != "" {
		add(s.bySite.get(site), true)
	}
	if domain != "default" {
		add(s.byDomain.get(domain), false)
	}
	return out
}

// AutomationRule is one [[X.automation]] table and where it came from.
type AutomationRule struct {
	Fields map[string]any
	Rollup bool
}
