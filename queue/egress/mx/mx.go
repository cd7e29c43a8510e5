package mx

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// MXResult is the mail exchanger information of a domain (KumoMTA's
// kumo.dns.lookup_mx table). Results are shared from the cache: treat them
// as read-only.
type MXResult struct {
	// DomainName is the queried domain as a lower-case FQDN with the
	// trailing dot; for a domain literal it is the literal as given.
	DomainName string
	// Hosts are the exchanger names (FQDNs with the trailing dot) in
	// preference order, sorted by name within a preference. For a domain
	// literal it holds the address (and ":port" when given).
	Hosts []string
	// ByPref groups Hosts by preference, each list sorted by name.
	ByPref map[uint16][]string
	// SiteName is the factored pattern of Hosts (see SiteName).
	SiteName string
	// IsDomainLiteral is set for "[ip]" domains.
	IsDomainLiteral bool
	// IsNullMX is set when the domain publishes a null MX ("MX 0 ."):
	// it accepts no mail. Hosts is empty then.
	IsNullMX bool
	// IsImplicit is set when the domain has no MX records and its own
	// address records are used (RFC 5321 §5.1).
	IsImplicit bool
	// IsSecure is set when the resolver vouched for the MX answer with
	// the AD bit (DNSSEC-validated); DANE is used only then.
	IsSecure bool
	// Addr and Port hold the address of a domain literal (Port 0 when none
	// was given).
	Addr netip.Addr
	Port int
	// Expires is when the answer leaves the cache.
	Expires time.Time
}

// Prefs returns the preference levels in ascending order.
func (m *MXResult) Prefs() []uint16 {
	prefs := make([]uint16, 0, len(m.ByPref))
	for p := range m.ByPref {
		prefs = append(prefs, p)
	}
	slices.Sort(prefs)
	return prefs
}

// LookupMX resolves the MX records of domain. A domain literal ("[ip]",
// "[IPv6:ip]", with an optional ":port") is answered without DNS. A domain
// that does not exist gives an error wrapping ErrNXDOMAIN; one without MX
// records gives the implicit MX (the domain itself); a null MX sets
// IsNullMX. Answers are cached for the smallest TTL of the MX records.
func (r *Resolver) LookupMX(ctx context.Context, domain string) (*MXResult, error) {
	if strings.HasPrefix(domain, "[") {
		addr, port, err := ParseDomainLiteral(domain)
		if err != nil {
			return nil, err
		}
		return literalResult(domain, addr, port), nil
	}
	name, err := fqdn(domain)
	if err != nil {
		return nil, err
	}
	v, err := r.cached(ctx, cacheKey{name, dns.TypeMX}, func(ctx context.Context) (any, time.Duration, error) {
		return r.fetchMX(ctx, name)
	})
	if err != nil {
		return nil, err
	}
	return v.(*MXResult), nil
}

func literalResult(domain string, addr netip.Addr, port int) *MXResult {
	host := addr.String()
	if port != 0 {
		host = netip.AddrPortFrom(addr, uint16(port)).String()
	}
	return &MXResult{
		DomainName:      domain,
		Hosts:           []string{host},
		ByPref:          map[uint16][]string{1: {host}},
		SiteName:        host,
		IsDomainLiteral: true,
		Addr:            addr,
		Port:            port,
	}
}

func (r *Resolver) fetchMX(ctx context.Context, name string) (any, time.Duration, error) {
	ans, err := r.query(ctx, name, dns.TypeMX)
	if err != nil {
		return nil, r.failureTTL(), fmt.Errorf("mx: lookup %s MX: %w", name, err)
	}
	if ans.nx {
		return nil, ans.negTTL, fmt.Errorf("mx: lookup %s MX: %w", name, ErrNXDOMAIN)
	}
	res := &MXResult{DomainName: name, ByPref: make(map[uint16][]string), IsSecure: ans.secure}
	ttl := ans.ttl
	if len(ans.rrs) == 0 {
		res.IsImplicit = true
		res.ByPref[0] = []string{name}
		ttl = ans.negTTL
	}
	for _, rr := range ans.rrs {
		m := rr.(*dns.MX)
		host := strings.ToLower(dns.Fqdn(m.Mx))
		if host == "." {
			// RFC 7505: a lone null MX means the domain accepts no mail;
			// beside other records it is ignored.
			res.IsNullMX = true
			continue
		}
		if !slices.Contains(res.ByPref[m.Preference], host) {
			res.ByPref[m.Preference] = append(res.ByPref[m.Preference], host)
		}
	}
	if len(res.ByPref) > 0 {
		res.IsNullMX = false
	}
	for _, p := range res.Prefs() {
		slices.Sort(res.ByPref[p])
		res.Hosts = append(res.Hosts, res.ByPref[p]...)
	}
	res.SiteName = SiteName(res.Hosts)
	res.Expires = r.opts.Now().Add(ttl)
	return res, ttl, nil
}

// ParseDomainLiteral parses "[1.2.3.4]", "[IPv6:::1]" and the
// non-conforming "[::1]", each with an optional ":port" either inside the
// brackets (IPv4 only, since "::1:25" is itself an IPv6 address) or after
// them, but not both. port is 0 when none is given.
func ParseDomainLiteral(s string) (addr netip.Addr, port int, err error) {
	bad := func(why string) (netip.Addr, int, error) {
		return netip.Addr{}, 0, fmt.Errorf("mx: invalid domain literal %q: %s", s, why)
	}
	if !strings.HasPrefix(s, "[") {
		return bad("missing [")
	}
	end := strings.IndexByte(s, ']')
	if end < 0 {
		return bad("missing ]")
	}
	inner, rest := s[1:end], s[end+1:]
	if rest != "" {
		if rest[0] != ':' {
			return bad("unexpected text after ]")
		}
		p, err := strconv.Atoi(rest[1:])
		if err != nil || p <= 0 || p > 65535 {
			return bad("invalid port")
		}
		port = p
	}
	if len(inner) > 5 && strings.EqualFold(inner[:5], "IPv6:") {
		inner = inner[5:]
		a, err := netip.ParseAddr(inner)
		if err != nil || !a.Is6() {
			return bad("invalid IPv6 address")
		}
		return a, port, nil
	}
	if a, err := netip.ParseAddr(inner); err == nil {
		return a.Unmap(), port, nil
	}
	host, p, err := splitPort(inner)
	if err != nil || p == 0 {
		return bad("invalid address")
	}
	if port != 0 {
		return bad("port given both inside and outside the brackets")
	}
	a, err := netip.ParseAddr(host)
	if err != nil || !a.Is4() {
		return bad("invalid address")
	}
	return a, p, nil
}

// SiteName factors a list of host names into KumoMTA's site pattern:
// names are split into labels and compared right to left; each position
// becomes the single label all names share there, or the alternatives
// "(a|b)" in order of first appearance, with "?" appended when some names
// have no label at that position. Names are lower-cased and the trailing
// dot dropped. For example gmail-smtp-in.l.google.com and
// alt1...alt4.gmail-smtp-in.l.google.com give
// "(alt1|alt2|alt3|alt4)?.gmail-smtp-in.l.google.com".
func SiteName(hosts []string) string {
	var columns [][]string // columns[i] = distinct labels at position i from the right
	var width int
	split := make([][]string, 0, len(hosts))
	for _, h := range hosts {
		h = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(h)), ".")
		if h == "" {
			continue
		}
		labels := strings.Split(h, ".")
		slices.Reverse(labels)
		split = append(split, labels)
		width = max(width, len(labels))
	}
	columns = make([][]string, width)
	optional := make([]bool, width)
	for _, labels := range split {
		for i := range width {
			if i >= len(labels) {
				optional[i] = true
				continue
			}
			if !slices.Contains(columns[i], labels[i]) {
				columns[i] = append(columns[i], labels[i])
			}
		}
	}
	parts := make([]string, width)
	for i, col := range columns {
		var p string
		if len(col) == 1 {
			p = col[0]
		} else {
			p = "(" + strings.Join(col, "|") + ")"
		}
		if optional[i] {
			p += "?"
		}
		parts[width-1-i] = p
	}
	return strings.Join(parts, ".")
}
