package main

import "github.com/kumogo/kumogo/internal/mailauth"

// AuthResolver serves kumo.spf, kumo.dmarc and msg:dkim_verify from the
// resolver kumo.dns uses (configure_resolver, configure_test_resolver or
// define_resolver), with its cache.
func (a dnsAdapter) AuthResolver() mailauth.Resolver { return a.resolver().AuthResolver() }
