package mx

import (
	"strconv"
	"strings"
)

// Restrict returns the plan limited to the MX hosts that keep accepts
// (KumoMTA's kumo.dns.set_mta_sts_enabled page: an MTA-STS enforce policy
// removes the hosts it does not list during resolution, so the site name
// reflects only the permitted hosts). The site name is computed again
// from the kept hosts, with the routing domain's port as in Plan. The
// plan's MX answer is shared from the cache and left as it is. ok is
// false when keep accepts none of the MX hosts.
func (p *ConnectionPlan) Restrict(keep func(host string) bool) (out *ConnectionPlan, ok bool) {
	if p.MX == nil {
		return p, true
	}
	var hosts []string
	for _, h := range p.MX.Hosts {
		if keep(h) {
			hosts = append(hosts, h)
		}
	}
	if len(hosts) == 0 {
		return nil, false
	}
	if len(hosts) == len(p.MX.Hosts) {
		return p, true
	}
	r := *p
	r.Candidates = nil
	for _, c := range p.Candidates {
		if keep(c.Name) {
			r.Candidates = append(r.Candidates, c)
		}
	}
	site := hosts
	if _, port, err := splitPort(p.Domain); err == nil && port != 0 && !strings.HasPrefix(p.Domain, "[") {
		site = make([]string, len(hosts))
		for i, h := range hosts {
			site[i] = strings.TrimSuffix(h, ".") + ":" + strconv.Itoa(port)
		}
	}
	r.Site = SiteName(site)
	return &r, true
}
