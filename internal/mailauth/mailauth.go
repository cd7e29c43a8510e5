// Package mailauth authenticates received mail: SPF (RFC 7208, through
// blitiri.com.ar/go/spf), DKIM verification (through go-msgauth), DMARC
// (RFC 7489; records parsed by go-msgauth), ARC verification and sealing
// (RFC 8617) and the Authentication-Results header (RFC 8601). Results take the shape of KumoMTA's
// authenticationresult object (docs/reference/authenticationresult.md).
//
// Every DNS query goes through a Resolver that the caller supplies, so the
// checks use kumogo's configured resolver and its cache; a DNS failure is
// a temperror result, never an error return.
package mailauth

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
)

// Result is one authentication result (RFC 8601 resinfo): KumoMTA's
// authenticationresult object.
type Result struct {
	Method        string
	MethodVersion int // 0: none
	Result        string
	Reason        string // "": none
	Props         map[string]string
}

// Resolver is the DNS that the checks use.
type Resolver interface {
	// LookupTXT returns the TXT records of name, each one string.
	LookupTXT(ctx context.Context, name string) ([]string, error)
	// LookupIP returns the A and AAAA addresses of name.
	LookupIP(ctx context.Context, name string) ([]netip.Addr, error)
	// LookupMX returns the exchangers of name's MX records (none when the
	// name has no MX records: no implicit MX).
	LookupMX(ctx context.Context, name string) ([]string, error)
	// LookupPTR returns the PTR names of ip.
	LookupPTR(ctx context.Context, ip netip.Addr) ([]string, error)
}

// ErrNotFound is wrapped by a Resolver's error for a name that does not
// exist (NXDOMAIN). Any other error is taken as a temporary failure.
var ErrNotFound = errors.New("no such domain")

// netResolver presents a Resolver the way the libraries expect errors
// (net.Resolver's): *net.DNSError with IsNotFound or IsTemporary.
type netResolver struct {
	r Resolver
}

func dnsError(name string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, ErrNotFound) {
		return &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
	}
	return &net.DNSError{Err: err.Error(), Name: name, IsTemporary: true}
}

func (n netResolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	txt, err := n.r.LookupTXT(ctx, name)
	return txt, dnsError(name, err)
}

func (n netResolver) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	hosts, err := n.r.LookupMX(ctx, name)
	if err != nil {
		return nil, dnsError(name, err)
	}
	out := make([]*net.MX, len(hosts))
	for i, h := range hosts {
		out[i] = &net.MX{Host: h}
	}
	return out, nil
}

func (n netResolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	addrs, err := n.r.LookupIP(ctx, host)
	if err != nil {
		return nil, dnsError(host, err)
	}
	out := make([]net.IPAddr, len(addrs))
	for i, a := range addrs {
		out[i] = net.IPAddr{IP: net.IP(a.AsSlice())}
	}
	return out, nil
}

func (n netResolver) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return nil, &net.DNSError{Err: "invalid address", Name: addr, IsNotFound: true}
	}
	names, err := n.r.LookupPTR(ctx, ip)
	return names, dnsError(addr, err)
}

// domainOf is the domain of an address ("user@domain", or a bare domain),
// lower case, without a trailing dot.
func domainOf(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		addr = addr[i+1:]
	}
	return strings.ToLower(strings.TrimSuffix(strings.Trim(addr, "<> \t"), "."))
}
