package main

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kumogo/kumogo/internal/mailauth"
	"github.com/kumogo/kumogo/internal/metrics"
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
	// off is kumo.dns.set_mta_sts_enabled(false): resolution consults no
	// policy
	off atomic.Bool
}

// stsGate is the MTA-STS source of MX resolution: the daemon's policies
// while kumo.dns.set_mta_sts_enabled allows them, none otherwise.
type stsGate struct{ d *daemon }

func (g stsGate) Get(ctx context.Context, domain string) (*mtasts.Policy, error) {
	if g.d.sts.off.Load() {
		return nil, nil
	}
	return g.d.mtaSTS().Get(ctx, domain)
}

// SetMTASTSEnabled serves kumo.dns.set_mta_sts_enabled.
func (a dnsAdapter) SetMTASTSEnabled(enabled bool) { a.d.sts.off.Store(!enabled) }

// daneResults is KumoMTA's dane_result_count: the DANE decisions of
// delivery by result (egress.DANEOK, ...).
func newDANEResults(reg *metrics.Registry) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "dane_result_count",
		Help: "Number of DANE policy decisions made on the SMTP delivery path, labelled by result",
	}, []string{"result"})
	reg.MustRegister(c)
	return c
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
