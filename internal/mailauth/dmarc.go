package mailauth

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"

	"github.com/emersion/go-msgauth/dmarc"
	"golang.org/x/net/publicsuffix"
)

// DMARC dispositions, spelled as KumoMTA's kumo.dmarc.check_msg returns
// them.
const (
	DMARCPass       = "Pass"
	DMARCNone       = "None"
	DMARCQuarantine = "Quarantine"
	DMARCReject     = "Reject"
	DMARCTempError  = "TempError"
	DMARCPermError  = "PermError"
)

// DMARCQuery is the input of one DMARC evaluation (RFC 7489).
type DMARCQuery struct {
	// FromDomain is the RFC5322.From domain.
	FromDomain string
	// MailFromDomain is the envelope sender's domain, used for SPF
	// alignment when the SPF result has no smtp.mailfrom.
	MailFromDomain string
	// DKIM are the dkim results of the message (VerifyDKIM).
	DKIM []Result
	// SPF is the spf result (CheckSPF).
	SPF Result
}

// CheckDMARC finds the DMARC policy of q.FromDomain (or of its
// organizational domain) and evaluates DKIM and SPF alignment. It returns
// the disposition and a dmarc result: pass; fail with
// policy.published-domain-policy when neither identifier aligns (the
// disposition follows p=, or sp= for a subdomain, sampled by pct=); none
// without a policy; temperror and permerror for DNS and record errors.
func CheckDMARC(ctx context.Context, r Resolver, q DMARCQuery) (string, Result) {
	from := domainOf(q.FromDomain)
	res := Result{Method: "dmarc", Props: map[string]string{"header.from": from}}
	org := OrganizationalDomain(from)
	nr := netResolver{r}
	opts := &dmarc.LookupOptions{LookupTXT: func(name string) ([]string, error) { return nr.LookupTXT(ctx, name) }}
	rec, err := dmarc.LookupWithOptions(from, opts)
	atOrg := false
	if errors.Is(err, dmarc.ErrNoPolicy) && org != from {
		rec, err = dmarc.LookupWithOptions(org, opts)
		atOrg = true
	}
	switch {
	case errors.Is(err, dmarc.ErrNoPolicy):
		res.Result, res.Reason = "none", "no DMARC records found for "+from
		return DMARCNone, res
	case dmarc.IsTempFail(err):
		res.Result, res.Reason = "temperror", strings.TrimPrefix(err.Error(), "dmarc: ")
		return DMARCTempError, res
	case err != nil:
		res.Result, res.Reason = "permerror", strings.TrimPrefix(err.Error(), "dmarc: ")
		return DMARCPermError, res
	}

	dkimAligned := ""
	for _, d := range q.DKIM {
		if d.Method == "dkim" && d.Result == "pass" && aligned(d.Props["header.d"], from, rec.DKIMAlignment) {
			dkimAligned = domainOf(d.Props["header.d"])
			break
		}
	}
	spfDomain := domainOf(q.SPF.Props["smtp.mailfrom"])
	if spfDomain == "" {
		spfDomain = domainOf(q.MailFromDomain)
	}
	spfAligned := q.SPF.Result == "pass" && aligned(spfDomain, from, rec.SPFAlignment)
	switch {
	case dkimAligned != "":
		res.Result, res.Reason = "pass", "DKIM signature of "+dkimAligned+" is aligned with "+from
		return DMARCPass, res
	case spfAligned:
		res.Result, res.Reason = "pass", "SPF pass for "+spfDomain+" is aligned with "+from
		return DMARCPass, res
	}

	policy := rec.Policy
	if atOrg && rec.SubdomainPolicy != "" {
		policy = rec.SubdomainPolicy
	}
	res.Result = "fail"
	res.Reason = "neither DKIM nor SPF is aligned with " + from
	res.Props["policy.published-domain-policy"] = string(policy)
	if rec.Percent != nil && *rec.Percent < 100 && rand.IntN(100) >= *rec.Percent {
		// RFC 7489 section 6.6.4: outside the sample the next weaker
		// policy applies.
		switch policy {
		case dmarc.PolicyReject:
			policy = dmarc.PolicyQuarantine
		case dmarc.PolicyQuarantine:
			policy = dmarc.PolicyNone
		}
	}
	switch policy {
	case dmarc.PolicyReject:
		return DMARCReject, res
	case dmarc.PolicyQuarantine:
		return DMARCQuarantine, res
	}
	return DMARCNone, res
}

// aligned reports whether domain is aligned with from: equal in strict
// mode, the same organizational domain in relaxed mode.
func aligned(domain, from string, mode dmarc.AlignmentMode) bool {
	domain = domainOf(domain)
	if domain == "" {
		return false
	}
	if domain == from {
		return true
	}
	return mode != dmarc.AlignmentStrict && OrganizationalDomain(domain) == OrganizationalDomain(from)
}

// OrganizationalDomain is domain's registrable domain by the public
// suffix list (RFC 7489 section 3.2), or domain itself when it has none.
func OrganizationalDomain(domain string) string {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	org, err := publicsuffix.EffectiveTLDPlusOne(domain)
	if err != nil {
		return domain
	}
	return org
}
