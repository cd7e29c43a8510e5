package shaping

import (
	"context"
	"strings"
)

// match is one entry of a provider's match list.
type match struct {
	Kind  string // MXSuffix, DomainSuffix or HostName
	Value string
}

// EgressPathConfig returns the merged options for delivering to domain
// from source via site, in the order of KumoMTA's "Shaping Option
// Resolution Order and Precedence" page: default; matching providers;
// their source blocks; the site block (rolled-up domains); the domain
// block (mx_rollup = false); the site's source block; the domain's source
// block. The result is a fresh table owned by the caller.
func (s *Shaping) EgressPathConfig(ctx context.Context, domain, source, site string) map[string]any {
	params := map[string]any{}
	apply := func(e *entry) {
		if e == nil {
			return
		}
		if e.replaceBase {
			params = map[string]any{}
		}
		mergeTable(params, e.params)
	}
	apply(s.byDomain.get("default"))

	if isDomainName(domain) {
		var withSources []string
		for _, name := range s.byProvider.keys {
			p := s.byProvider.m[name]
			if !s.providerMatches(ctx, name, p, domain) {
				continue
			}
			mergeTable(params, p.params)
			p.applyProviderParams(name, source, params)
			if len(p.sources) > 0 {
				withSources = append(withSources, name)
			}
		}
		for _, name := range withSources {
			p := s.byProvider.m[name]
			if src, ok := p.sources[source]; ok {
				mergeTable(params, src)
				p.applyProviderParams(name, source, params)
			}
		}
	}

	siteEntry := s.bySite.get(site)
	domainEntry := s.byDomain.get(domain)
	apply(siteEntry)
	apply(domainEntry)
	for _, e := range []*entry{siteEntry, domainEntry} {
		if e == nil {
			continue
		}
		if src, ok := e.sources[source]; ok {
			mergeTable(params, src)
		}
	}
	delete(params, "provider_source_selection_rate")
	return params
}

// applyProviderParams adds what a provider block implies: its name as
// provider_name, and provider-wide connection limit, message rate and
// source selection rate as named additional limits shared by every site
// the provider matches.
func (e *entry) applyProviderParams(name, source string, target map[string]any) {
	implied := map[string]any{"provider_name": name}
	if e.providerLimit != nil {
		implied["additional_connection_limits"] = map[string]any{
			"shaping-provider-" + name + "-" + source + "-limit": e.providerLimit,
		}
	}
	if e.providerRate != nil {
		implied["additional_message_rate_throttles"] = map[string]any{
			"shaping-provider-" + name + "-" + source + "-rate": e.providerRate,
		}
	}
	if rate, ok := target["provider_source_selection_rate"]; ok {
		delete(target, "provider_source_selection_rate")
		implied["additional_source_selection_rates"] = map[string]any{
			"shaping-provider-" + name + "-" + source + "-selection-rate": rate,
		}
	}
	mergeTable(target, implied)
}

// providerMatches reports whether provider p applies to domain: a
// DomainSuffix rule matching the domain, or else every MX host matching
// one of the MXSuffix/HostName rules (so that a vanity domain mixing
// providers is not lumped in with one of them). A domain whose MX does not
// resolve matches no MX rule.
func (s *Shaping) providerMatches(ctx context.Context, name string, p *entry, domain string) bool {
	needMX := false
	for _, m := range p.matches {
		switch m.Kind {
		case "DomainSuffix":
			if suffixMatches(domain, m.Value) {
				return true
			}
		default:
			needMX = true
		}
	}
	if !needMX || s.resolve == nil {
		return false
	}
	mx, err := s.resolve(ctx, domain)
	if err != nil || len(mx.Hosts) == 0 {
		return false
	}
	for _, host := range mx.Hosts {
		ok := false
		for _, m := range p.matches {
			switch m.Kind {
			case "MXSuffix":
				ok = suffixMatches(host, m.Value)
			case "HostName":
				ok = strings.TrimSuffix(host, ".") == strings.TrimSuffix(m.Value, ".")
			}
			if ok {
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// suffixMatches compares without the candidate's trailing dot, plainly
// (not a pattern).
func suffixMatches(candidate, suffix string) bool {
	return strings.HasSuffix(strings.TrimSuffix(candidate, "."), suffix)
}

// isDomainName reports whether name looks like a DNS name (provider rules
// only apply to those, not to "[10.0.0.1]" literals or host:port).
func isDomainName(name string) bool {
	if name == "" || len(name) > 253 {
		return false
	}
	for _, c := range name {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '.', c == '_':
		default:
			return false
		}
	}
	return true
}
