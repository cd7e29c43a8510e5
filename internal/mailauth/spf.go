package mailauth

import (
	"context"
	"errors"
	"net"
	"net/netip"

	"blitiri.com.ar/go/spf"
)

// SPF results (RFC 7208 section 2.6), as KumoMTA spells its SPF
// disposition.
const (
	SPFNone      = "none"
	SPFNeutral   = "neutral"
	SPFPass      = "pass"
	SPFFail      = "fail"
	SPFSoftFail  = "softfail"
	SPFTempError = "temperror"
	SPFPermError = "permerror"
)

// SPFQuery is one check_host() evaluation.
type SPFQuery struct {
	// IP is the SMTP client's address.
	IP netip.Addr
	// Domain is the domain whose policy is checked; when Sender is set
	// its domain is used instead.
	Domain string
	// Sender is the MAIL FROM address; "" checks the HELO identity
	// (postmaster@Domain).
	Sender string
	// HELO is the EHLO/HELO name, for the %{h} macro and smtp.helo.
	HELO string
}

// CheckSPF evaluates q with RFC 7208's limits (10 DNS-querying terms, 2
// void lookups) and returns the disposition and its result (method spf,
// props smtp.mailfrom and smtp.helo), as kumo.spf.check_host does.
func CheckSPF(ctx context.Context, r Resolver, q SPFQuery) (string, Result) {
	res := Result{Method: "spf", Props: map[string]string{}}
	if q.Sender != "" {
		res.Props["smtp.mailfrom"] = q.Sender
	}
	if q.HELO != "" {
		res.Props["smtp.helo"] = q.HELO
	}
	identity := q.Sender
	domain := domainOf(identity)
	if domain == "" {
		domain = domainOf(q.Domain)
		identity = "postmaster@" + domain
	}
	if domain == "" {
		res.Result = SPFNone
		res.Reason = "no domain to check"
		return res.Result, res
	}
	result, err := spf.CheckHostWithSender(net.IP(q.IP.Unmap().AsSlice()), q.HELO, identity,
		spf.WithContext(ctx), spf.WithResolver(netResolver{r}))
	res.Result = string(result)
	res.Reason = spfReason(result, err, domain)
	return res.Result, res
}

// spfReason explains a result; the library reports how it decided through
// its error value.
func spfReason(result spf.Result, err error, domain string) string {
	var dnsErr *net.DNSError
	switch {
	case errors.Is(err, spf.ErrNoResult):
		return "no SPF records found for " + domain
	case errors.Is(err, spf.ErrMatchedAll):
		return "matched 'all' directive"
	case errors.Is(err, spf.ErrMatchedA):
		return "matched 'a' directive"
	case errors.Is(err, spf.ErrMatchedIP):
		return "matched 'ip' directive"
	case errors.Is(err, spf.ErrMatchedMX):
		return "matched 'mx' directive"
	case errors.Is(err, spf.ErrMatchedPTR):
		return "matched 'ptr' directive"
	case errors.Is(err, spf.ErrMatchedExists):
		return "matched 'exists' directive"
	case errors.As(err, &dnsErr):
		return "DNS lookup of " + dnsErr.Name + " failed: " + dnsErr.Err
	case err != nil:
		return err.Error()
	case result == spf.Neutral:
		return "no directive matched"
	}
	return string(result)
}
