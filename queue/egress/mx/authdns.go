package mx

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/miekg/dns"

	"github.com/kumogo/kumogo/internal/mailauth"
)

// AuthResolver serves the mail authentication checks (SPF, DKIM, DMARC)
// from r, with its cache: NXDOMAIN is reported as mailauth.ErrNotFound,
// and so is a name that cannot exist (not a valid domain name).
func (r *Resolver) AuthResolver() mailauth.Resolver { return authDNS{r} }

type authDNS struct{ r *Resolver }

func authErr(name string, err error) error {
	if err != nil && errors.Is(err, ErrNXDOMAIN) {
		return fmt.Errorf("%w: %w", mailauth.ErrNotFound, err)
	}
	return err
}

func validName(name string) error {
	if _, ok := dns.IsDomainName(dns.Fqdn(strings.TrimSpace(name))); !ok || strings.TrimSpace(name) == "" {
		return fmt.Errorf("%w: invalid domain name %q", mailauth.ErrNotFound, name)
	}
	return nil
}

func (a authDNS) LookupTXT(ctx context.Context, name string) ([]string, error) {
	if err := validName(name); err != nil {
		return nil, err
	}
	txt, err := a.r.LookupTXT(ctx, name)
	return txt, authErr(name, err)
}

func (a authDNS) LookupIP(ctx context.Context, name string) ([]netip.Addr, error) {
	if err := validName(name); err != nil {
		return nil, err
	}
	addrs, err := a.r.LookupAddr(ctx, name, "")
	return addrs, authErr(name, err)
}

func (a authDNS) LookupMX(ctx context.Context, name string) ([]string, error) {
	if err := validName(name); err != nil {
		return nil, err
	}
	res, err := a.r.LookupMX(ctx, name)
	if err != nil {
		return nil, authErr(name, err)
	}
	if res.IsImplicit || res.IsNullMX {
		return nil, nil
	}
	return res.Hosts, nil
}

func (a authDNS) LookupPTR(ctx context.Context, ip netip.Addr) ([]string, error) {
	names, err := a.r.LookupPTR(ctx, ip)
	return names, authErr(ip.String(), err)
}
