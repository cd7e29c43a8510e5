package egress

import (
	"context"
	"errors"
	"fmt"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/smtpreply"
	"github.com/kumogo/kumogo/queue/egress/mx"
)

// Connect applies p's prohibited_hosts and skip_hosts to plan (failing
// with the *mx.Failure of FilterHosts) and dials the candidates in order
// until a session is established, KumoMTA's ConnectNextHost. When a TLS
// handshake fails and p.OpportunisticTLSReconnectOnFailedHandshake is set
// (and TLS is not Required), the same candidate is tried again without
// TLS. When every candidate fails the error is an *smtpreply.Error with
// "400 KumoMTA internal: failed to connect to any candidate hosts: <last
// failure>" (a TransientFailure); the individual failures are joined in
// its Err.
func (d *Dialer) Connect(ctx context.Context, plan *mx.ConnectionPlan, p *config.EgressPath, src *config.EgressSource, ehloName string) (*Session, error) {
	// ip_lookup_strategy first: the plan holds both address families, and
	// an address the strategy drops is never looked at, as with KumoMTA,
	// where the lookup itself follows the strategy.
	if cands := mx.ApplyStrategy(plan.Candidates, p.IPLookupStrategy); len(cands) != len(plan.Candidates) {
		if len(cands) == 0 {
			return nil, &mx.Failure{Code: 451, Text: mx.TextNoHosts}
		}
		byStrategy := *plan
		byStrategy.Candidates = cands
		plan = &byStrategy
	}
	filtered, err := mx.FilterHosts(plan, p.ProhibitedHosts, p.SkipHosts)
	if err != nil {
		return nil, err
	}
	if len(filtered.Candidates) == 0 {
		return nil, &mx.Failure{Code: 451, Text: mx.TextNoHosts}
	}
	var errs []error
	for _, c := range filtered.Candidates {
		// DANE and MTA-STS decide the TLS of each host (dane.go)
		cctx, cp, err := d.tlsPolicy(ctx, filtered, c, p, src)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s, err := d.Dial(cctx, c, cp, src, ehloName)
		var he *tlsHandshakeError
		if err != nil && errors.As(err, &he) && cp.OpportunisticTLSReconnectOnFailedHandshake &&
			cp.EnableTLS != TLSRequired && cp.EnableTLS != TLSRequiredInsecure {
			s, err = d.dial(cctx, c, cp, src, ehloName, TLSDisabled)
		}
		if err == nil {
			return s, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	last := errs[len(errs)-1]
	detail := last.Error()
	var pe *smtpreply.Error
	if errors.As(last, &pe) {
		c := filtered.Candidates[len(errs)-1]
		c.Port = targetPort(c, p, src)
		detail = fmt.Sprintf("%s responded %s", c.String(), pe.Response.String())
	}
	return nil, &smtpreply.Error{
		Response: smtpreply.Response{Code: 400, Content: textConnectFailed + detail},
		Err:      errors.Join(errs...),
	}
}

// Connect is (*Dialer).Connect with the zero Dialer.
func Connect(ctx context.Context, plan *mx.ConnectionPlan, p *config.EgressPath, src *config.EgressSource, ehloName string) (*Session, error) {
	var d Dialer
	return d.Connect(ctx, plan, p, src, ehloName)
}
