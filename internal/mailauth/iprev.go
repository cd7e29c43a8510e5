package mailauth

import (
	"context"
	"errors"
	"net/netip"
	"strings"
)

// maxIPRevNames bounds how many PTR names are checked (RFC 8601 section
// 3 leaves it to the verifier; RFC 7208's ptr mechanism uses 10).
const maxIPRevNames = 10

// IPRev is the iprev method (RFC 8601 section 3): pass when a PTR name of
// ip resolves back to ip. Reasons are the texts of KumoMTA's
// policy-extras.mail_auth iprev function.
func IPRev(ctx context.Context, r Resolver, ip netip.Addr) Result {
	ip = ip.Unmap()
	s := ip.String()
	res := Result{Method: "iprev", Props: map[string]string{"smtp.remote-ip": s}}
	names, err := r.LookupPTR(ctx, ip)
	if err != nil && !errors.Is(err, ErrNotFound) {
		res.Result, res.Reason = "temperror", "ip "+s+" failed to resolve PTR: "+err.Error()
		return res
	}
	if len(names) == 0 {
		res.Result, res.Reason = "permerror", "ip "+s+" has no PTR"
		return res
	}
	res.Result = "fail"
	for i, name := range names {
		if i == maxIPRevNames {
			break
		}
		addrs, err := r.LookupIP(ctx, strings.TrimSuffix(name, "."))
		if err != nil && !errors.Is(err, ErrNotFound) {
			res.Result, res.Reason = "temperror", "failed to resolve "+name+": "+err.Error()
			return res
		}
		if len(addrs) == 0 {
			res.Reason = "name " + name + " has no A/AAAA"
			continue
		}
		for _, a := range addrs {
			if a.Unmap() == ip {
				res.Result, res.Reason = "pass", "ip "+s+" <-> "+name
				return res
			}
		}
		res.Reason = "ip " + s + " is not an address of " + name
	}
	return res
}
