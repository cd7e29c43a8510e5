package main

import (
	"context"
	"net/netip"
	"sort"

	"github.com/kumogo/kumogo/queue/egress/mx"
	"github.com/kumogo/kumogo/runtime"
)

// dnsAdapter serves kumo.dns.* from the MX resolver, or from its own
// resolver for kumo.dns.define_resolver.
type dnsAdapter struct {
	d     *daemon
	fixed *mx.Resolver
}

func (a dnsAdapter) resolver() *mx.Resolver {
	if a.fixed != nil {
		return a.fixed
	}
	return a.d.resolver()
}

// NewResolver is a named resolver for kumo.dns.define_resolver.
func (a dnsAdapter) NewResolver(servers []string) (runtime.DNS, error) {
	res, err := mx.NewResolver(servers, mx.Options{})
	if err != nil {
		return nil, err
	}
	return dnsAdapter{d: a.d, fixed: res}, nil
}

func (a dnsAdapter) LookupMX(ctx context.Context, domain string) (*runtime.MXAnswer, error) {
	res, err := a.resolver().LookupMX(ctx, domain)
	if err != nil {
		return nil, err
	}
	return &runtime.MXAnswer{
		DomainName:      res.DomainName,
		Hosts:           res.Hosts,
		ByPref:          res.ByPref,
		SiteName:        res.SiteName,
		IsDomainLiteral: res.IsDomainLiteral,
		IsSecure:        res.IsSecure,
		IsMX:            !res.IsImplicit && !res.IsDomainLiteral,
	}, nil
}

func (a dnsAdapter) LookupAddr(ctx context.Context, name string) ([]string, error) {
	addrs, err := a.resolver().LookupAddr(ctx, name, "")
	if err != nil {
		return nil, err
	}
	out := make([]string, len(addrs))
	for i, ip := range addrs {
		out[i] = ip.String()
	}
	sort.Strings(out)
	return out, nil
}

func (a dnsAdapter) LookupPTR(ctx context.Context, ip netip.Addr) ([]string, error) {
	return a.resolver().LookupPTR(ctx, ip)
}

func (a dnsAdapter) LookupTXT(ctx context.Context, name string) ([]string, error) {
	return a.resolver().LookupTXT(ctx, name)
}

func (a dnsAdapter) Configure(servers []string) error {
	res, err := mx.NewResolver(servers, mx.Options{})
	if err != nil {
		return err
	}
	a.d.mu.Lock()
	old := a.d.res
	a.d.res = res
	a.d.mu.Unlock()
	if old != nil {
		old.Close() // its kept sockets; lookups still running finish
	}
	return nil
}

// resolver returns the configured resolver, or one from /etc/resolv.conf.
func (d *daemon) resolver() *mx.Resolver {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.res == nil {
		res, err := mx.FromResolvConf("/etc/resolv.conf", mx.Options{})
		if err != nil {
			d.log.Warn().Err(err).Msg("reading /etc/resolv.conf; using 127.0.0.1:53")
			res, _ = mx.NewResolver([]string{"127.0.0.1:53"}, mx.Options{})
		}
		d.res = res
	}
	return d.res
}
