package mx

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"strings"
	"sync"

	"github.com/kumogo/kumogo/internal/config"
)

// Failure is a routing outcome that fails delivery for the whole ready
// queue with an SMTP-style response, with KumoMTA's texts: null MX (556),
// no addresses (451), prohibited hosts (550), skip_hosts only (451).
type Failure struct {
	// Code is the SMTP reply code.
	Code int
	// Text is the response text, starting with the enhanced status code.
	Text string
	// Err is the underlying cause, if any.
	Err error
}

// Error renders "<code> <text>".
func (f *Failure) Error() string { return strconv.Itoa(f.Code) + " " + f.Text }

// Unwrap returns the underlying cause.
func (f *Failure) Unwrap() error { return f.Err }

// Permanent reports whether the failure is a bounce (5xx) rather than a
// transient failure.
func (f *Failure) Permanent() bool { return f.Code >= 500 }

// Response texts of routing failures, KumoMTA's (KumoMTA docs: "Log
// Record"; null MX per RFC 7505).
const (
	TextNullMX       = "5.1.10 Recipient address has a null MX"
	TextNoHosts      = "4.4.4 MX didn't resolve to any hosts"
	TextOnlySkipped  = "4.4.4 KumoMTA internal: MX consisted solely of hosts on the skip_hosts list"
	textProhibitedFm = "5.4.4 %s is on the list of prohibited_hosts"
)

// Candidate is one place to connect to.
type Candidate struct {
	// Name is the host label for logs (peer_address.name): the MX host
	// (FQDN with the trailing dot), the mx_list name or label, or the
	// literal address.
	Name string
	Addr netip.Addr
	Port int
	// Pref is the MX preference of the host (0 for mx_list and literals).
	Pref uint16
	// Secure: the address came from DNSSEC-validated answers, or Name is
	// a securely published CNAME (dnssec.go); DANE needs it.
	Secure bool
}

// AddrPort returns the address and port to dial.
func (c Candidate) AddrPort() netip.AddrPort { return netip.AddrPortFrom(c.Addr, uint16(c.Port)) }

// String renders "ip:port" ("[ipv6]:port").
func (c Candidate) String() string { return c.AddrPort().String() }

// ConnectionPlan is the ordered list of candidates for one routing domain.
type ConnectionPlan struct {
	// Domain is the routing domain as given.
	Domain string
	// Site is the site name that names the ready queue.
	Site string
	// MX is the MX answer (nil with mx_list).
	MX *MXResult
	// Candidates in connection order: preference levels in order, addresses
	// shuffled within a level; mx_list entries in their given order.
	Candidates []Candidate
	// TreatListAsSecure: the mx_list (MX nil) is a trusted selection of
	// hosts (the queue's protocol.smtp.treat_mx_list_as_secure).
	TreatListAsSecure bool
	// STSMode is the mode of the domain's MTA-STS policy found during
	// resolution ("enforce", "testing", "none"; "" without a policy): the
	// egress path's enable_mta_sts decides whether it raises TLS.
	STSMode string
}

// Plan resolves routingDomain (or mxList, when not empty) into an ordered
// connection plan. port is the default port (smtp_port); an explicit port on
// the domain, a literal or an mx_list entry overrides it. (KumoMTA lets a
// source's remote_port override both; the SMTP client applies that.)
// strategy is the ip_lookup_strategy.
//
// NXDOMAIN and DNS failures of the MX query are returned as errors (wrapping
// ErrNXDOMAIN for the former). A null MX and a plan without any address
// return a *Failure together with a plan whose Site (and MX) are set.
func (r *Resolver) Plan(ctx context.Context, routingDomain string, mxList []config.MXListEntry, port int, strategy string) (*ConnectionPlan, error) {
	if !ValidStrategy(strategy) {
		return nil, fmt.Errorf("mx: unknown ip_lookup_strategy %q", strategy)
	}
	if len(mxList) > 0 {
		return r.planList(ctx, routingDomain, mxList, port, strategy)
	}
	plan := &ConnectionPlan{Domain: routingDomain}
	if strings.HasPrefix(routingDomain, "[") {
		res, err := r.LookupMX(ctx, routingDomain)
		if err != nil {
			return nil, err
		}
		p := port
		if res.Port != 0 {
			p = res.Port
		}
		plan.MX, plan.Site = res, res.SiteName
		plan.Candidates = []Candidate{{Name: res.Addr.String(), Addr: res.Addr, Port: p, Pref: 1}}
		return plan, nil
	}
	domain, domainPort, err := splitPort(routingDomain)
	if err != nil {
		return nil, fmt.Errorf("mx: routing domain %q: %w", routingDomain, err)
	}
	res, err := r.LookupMX(ctx, domain)
	if err != nil {
		return nil, err
	}
	plan.MX, plan.Site = res, res.SiteName
	if domainPort != 0 {
		port = domainPort
		hosts := make([]string, len(res.Hosts))
		for i, h := range res.Hosts {
			hosts[i] = strings.TrimSuffix(h, ".") + ":" + strconv.Itoa(domainPort)
		}
		plan.Site = SiteName(hosts)
	}
	if res.IsNullMX {
		return plan, &Failure{Code: 556, Text: TextNullMX}
	}
	var (
		prefs = res.Prefs()
		addrs = make([][][]netip.Addr, len(prefs)) // per pref, per host
		secs  = make([][]bool, len(prefs))
		errs  = make([][]error, len(prefs))
		wg    sync.WaitGroup
	)
	for i, p := range prefs {
		hosts := res.ByPref[p]
		addrs[i] = make([][]netip.Addr, len(hosts))
		secs[i] = make([]bool, len(hosts))
		errs[i] = make([]error, len(hosts))
		for j, h := range hosts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				addrs[i][j], secs[i][j], errs[i][j] = r.lookupHost(ctx, h, strategy)
			}()
		}
	}
	wg.Wait()
	var lastErr error
	for i, p := range prefs {
		start := len(plan.Candidates)
		for j, h := range res.ByPref[p] {
			if errs[i][j] != nil {
				lastErr = errs[i][j]
			}
			for _, a := range addrs[i][j] {
				plan.Candidates = append(plan.Candidates, Candidate{Name: h, Addr: a, Port: port, Pref: p, Secure: secs[i][j]})
			}
		}
		level := plan.Candidates[start:]
		rand.Shuffle(len(level), func(a, b int) { level[a], level[b] = level[b], level[a] })
	}
	if len(plan.Candidates) == 0 {
		return plan, &Failure{Code: 451, Text: TextNoHosts, Err: lastErr}
	}
	return plan, nil
}

// MXListSite returns the site name of an mx_list: "mx_list:" and the
// entries' labels (the name, or the addr of {name, addr} entries) joined by
// commas.
func MXListSite(mxList []config.MXListEntry) string {
	labels := make([]string, len(mxList))
	for i, e := range mxList {
		labels[i] = e.Name
		if e.Addr != "" {
			labels[i] = e.Addr
		}
	}
	return "mx_list:" + strings.Join(labels, ",")
}

func (r *Resolver) planList(ctx context.Context, domain string, mxList []config.MXListEntry, port int, strategy string) (*ConnectionPlan, error) {
	plan := &ConnectionPlan{Domain: domain, Site: MXListSite(mxList)}
	var lastErr error
	for _, e := range mxList {
		cands, err := r.listEntry(ctx, e, port, strategy)
		if err != nil {
			lastErr = err
			continue
		}
		plan.Candidates = append(plan.Candidates, cands...)
	}
	if len(plan.Candidates) == 0 {
		return plan, &Failure{Code: 451, Text: TextNoHosts, Err: lastErr}
	}
	return plan, nil
}

// listEntry resolves one mx_list entry: {name, addr} with "ip[:port]",
// "[ip]" literals (optionally with a port), bare "ip" or "ip:port", or a
// host name with an optional ":port" resolved by A/AAAA.
func (r *Resolver) listEntry(ctx context.Context, e config.MXListEntry, port int, strategy string) ([]Candidate, error) {
	if e.Addr != "" {
		a, p, err := parseAddrPort(e.Addr)
		if err != nil {
			return nil, fmt.Errorf("mx: mx_list entry %q: %w", e.Name, err)
		}
		return []Candidate{{Name: e.Name, Addr: a, Port: orDefault(p, port)}}, nil
	}
	name := strings.TrimSpace(e.Name)
	if strings.HasPrefix(name, "[") {
		a, p, err := ParseDomainLiteral(name)
		if err != nil {
			return nil, err
		}
		return []Candidate{{Name: a.String(), Addr: a, Port: orDefault(p, port)}}, nil
	}
	if a, p, err := parseAddrPort(name); err == nil {
		return []Candidate{{Name: a.String(), Addr: a, Port: orDefault(p, port)}}, nil
	}
	host, p, err := splitPort(name)
	if err != nil {
		return nil, fmt.Errorf("mx: mx_list entry: %w", err)
	}
	addrs, secure, err := r.lookupHost(ctx, host, strategy)
	if err != nil {
		return nil, err
	}
	out := make([]Candidate, len(addrs))
	for i, a := range addrs {
		out[i] = Candidate{Name: host, Addr: a, Port: orDefault(p, port), Secure: secure}
	}
	return out, nil
}

func orDefault(explicit, dflt int) int {
	if explicit != 0 {
		return explicit
	}
	return dflt
}

// parseAddrPort parses "ip", "ip:port", "[ip]" or "[ip]:port".
func parseAddrPort(s string) (netip.Addr, int, error) {
	s = strings.TrimSpace(s)
	if a, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
		return a.Unmap(), 0, nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.Addr{}, 0, fmt.Errorf("invalid address %q", s)
	}
	return ap.Addr().Unmap(), int(ap.Port()), nil
}

// FilterHosts applies prohibited_hosts and skip_hosts to plan: a candidate
// address inside prohibited fails the whole plan with
// "550 5.4.4 <addr> is on the list of prohibited_hosts"; candidates inside
// skip are dropped, and when nothing is left the result is
// "451 4.4.4 KumoMTA internal: MX consisted solely of hosts on the
// skip_hosts list". The plan is not modified; a filtered copy is returned.
func FilterHosts(plan *ConnectionPlan, prohibited, skip config.CIDRList) (*ConnectionPlan, error) {
	for _, c := range plan.Candidates {
		if prohibited.Contains(c.Addr) {
			return nil, &Failure{Code: 550, Text: fmt.Sprintf(textProhibitedFm, c.Addr)}
		}
	}
	out := *plan
	if len(skip) == 0 {
		return &out, nil
	}
	out.Candidates = make([]Candidate, 0, len(plan.Candidates))
	for _, c := range plan.Candidates {
		if !skip.Contains(c.Addr) {
			out.Candidates = append(out.Candidates, c)
		}
	}
	if len(out.Candidates) == 0 && len(plan.Candidates) > 0 {
		return nil, &Failure{Code: 451, Text: TextOnlySkipped}
	}
	return &out, nil
}

// ApplyStrategy returns, in order, the candidates of a plan resolved with
// the default strategy (both address families) that ip_lookup_strategy
// keeps: Ipv4Only and Ipv6Only keep one family; Ipv4thenIpv6 keeps a
// host's IPv6 addresses only when it has no IPv4 one, and Ipv6thenIpv4
// the reverse. Address literals are kept whatever the strategy, as
// LookupAddr does. cands is not modified.
func ApplyStrategy(cands []Candidate, strategy string) []Candidate {
	switch strategy {
	case "", Ipv4AndIpv6:
		return cands
	}
	has4, has6 := map[string]bool{}, map[string]bool{}
	for _, c := range cands {
		if c.Addr.Is4() {
			has4[c.Name] = true
		} else {
			has6[c.Name] = true
		}
	}
	out := make([]Candidate, 0, len(cands))
	for _, c := range cands {
		v4, keep := c.Addr.Is4(), true
		if _, err := netip.ParseAddr(strings.Trim(c.Name, "[]")); err != nil {
			switch strategy {
			case Ipv4Only:
				keep = v4
			case Ipv6Only:
				keep = !v4
			case Ipv4ThenIpv6:
				keep = v4 || !has4[c.Name]
			case Ipv6ThenIpv4:
				keep = !v4 || !has6[c.Name]
			}
		}
		if keep {
			out = append(out, c)
		}
	}
	return out
}

// IsNXDOMAIN reports whether err says a name does not exist.
func IsNXDOMAIN(err error) bool { return errors.Is(err, ErrNXDOMAIN) }
