package main

import (
	"context"

	"github.com/kumogo/kumogo/internal/mailauth"
	"github.com/kumogo/kumogo/internal/mtasts"
)

// AuthResolver serves kumo.spf, kumo.dmarc and msg:dkim_verify from the
// resolver kumo.dns uses (configure_resolver, configure_test_resolver or
// define_resolver), with its cache.
func (a dnsAdapter) AuthResolver() mailauth.Resolver { return a.resolver().AuthResolver() }

// mtaSTS is the MTA-STS policy source of outbound delivery: the _mta-sts
// records come from the resolver kumo.dns uses, the policy files from
// HTTPS with the system roots.
func (d *daemon) mtaSTS() *mtasts.Fetcher {
	return &mtasts.Fetcher{LookupTXT: func(ctx context.Context, name string) ([]string, error) {
		return d.resolver().LookupTXT(ctx, name)
	}}
}
