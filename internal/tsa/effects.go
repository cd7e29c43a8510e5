package tsa

import (
	"context"
	"fmt"
	"strings"
)

// put records the effect of one action of rule and returns what
// subscribers are sent about it: a ReadyQSuspension, SchedQSuspension or
// SchedQBounce, or nil (a configuration override, served as a file; or
// nothing to do).
func (s *Store) put(ctx context.Context, rule *Rule, act Action, e effect) (any, error) {
	hash := func(parts ...string) string {
		return rule.Hash + "-" + act.Kind + "-" + act.Name + "-" + strings.Join(parts, "|")
	}
	switch act.Kind {
	case ActSuspend:
		v := ReadyQSuspension{RuleHash: hash(e.site, e.source), SiteName: e.site,
			Source: e.source, Reason: e.reason, Expires: e.expires}
		return v, s.putReadyQ(ctx, v)
	case ActSuspendTenant, ActSuspendCampaign:
		if e.tenant == "" {
			return nil, nil // no tenant: no effect
		}
		var camp *string
		if act.Kind == ActSuspendCampaign && e.campaign != "" {
			camp = &e.campaign
		}
		c := ""
		if camp != nil {
			c = *camp
		}
		v := SchedQSuspension{RuleHash: hash(e.domain, e.tenant, c), Tenant: e.tenant,
			Domain: e.domain, Campaign: camp, Reason: e.reason, Expires: e.expires}
		return v, s.putSchedQ(ctx, v)
	case ActBounce, ActBounceTenant, ActBounceCampaign:
		var tenant, camp *string
		if act.Kind != ActBounce {
			if e.tenant == "" {
				return nil, nil
			}
			tenant = &e.tenant
			if act.Kind == ActBounceCampaign && e.campaign != "" {
				camp = &e.campaign
			}
		}
		t, c := "", ""
		if tenant != nil {
			t = *tenant
		}
		if camp != nil {
			c = *camp
		}
		v := SchedQBounce{RuleHash: hash(e.domain, t, c), Domain: e.domain, Tenant: tenant,
			Campaign: camp, Reason: e.reason, Expires: e.expires}
		return v, s.putBounce(ctx, v)
	case ActSetConfig, ActSetDomainConfig:
		rollup := rule.Rollup && act.Kind == ActSetConfig
		scope := e.domain
		if rollup {
			scope = e.site
		}
		return nil, s.putConfig(ctx, ConfigOverride{RuleHash: hash(scope, e.source), Domain: scope, MXRollup: rollup,
			Source: e.source, Name: act.Name, Value: act.Value, Reason: e.reason, Expires: e.expires})
	}
	return nil, fmt.Errorf("unknown action")
}
