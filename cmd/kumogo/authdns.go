package main

import (
	"context"
	"sync"

	"github.com/kumogo/kumogo/internal/mailauth"
	"github.com/kumogo/kumogo/internal/mtasts"
	"github.com/kumogo/kumogo/queue/egress/mx"
)

// AuthResolver serves kumo.spf, kumo.dmarc and msg:dkim_verify from the
// resolver kumo.dns uses (configure_resolver, configure_test_resolver or
// define_resolver), with its cache.
func (a dnsAdapter) AuthResolver() mailauth.Resolver { return a.resolver().AuthResolver() }

// stsSource is the MTA-STS policy source of a daemon's deliveries: the
// _mta-sts records come from the resolver kumo.dns uses, the policy files
// from HTTPS with the system roots. It is made on first use, since
// kumo.dns.configure_test_mta_sts in init comes before the engine.
type stsSource struct {
	once sync.Once
	f    *mtasts.Fetcher
}

func (d *daemon) mtaSTS() *mtasts.Fetcher {
	d.sts.once.Do(func() {
		d.sts.f = &mtasts.Fetcher{LookupTXT: func(ctx context.Context, name string) ([]string, error) {
			return d.resolver().LookupTXT(ctx, name)
		}}
	})
	return d.sts.f
}

// SetTestMTASTS serves kumo.dns.configure_test_mta_sts.
func (a dnsAdapter) SetTestMTASTS(policies map[string]*mtasts.Policy) {
	a.d.mtaSTS().SetTest(policies)
}

// daneDNS serves the TLSA lookups of DANE from the resolver kumo.dns uses
// at the time of each lookup.
type daneDNS struct{ d *daemon }

func (a daneDNS) LookupTLSA(ctx context.Context, host string, port int) ([]mx.TLSA, bool, error) {
	return a.d.resolver().LookupTLSA(ctx, host, port)
}
