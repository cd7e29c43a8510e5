package config

import (
	"math"
	"time"

	"github.com/kumogo/kumogo/internal/duration"
)

var egressSourceFields = []string{
	"name", "source_address", "ehlo_domain", "remote_port", "ha_proxy_server",
	"ha_proxy_source_address", "socks5_proxy_server",
	"socks5_proxy_source_address", "socks5_proxy_username",
	"socks5_proxy_password", "suspend_when_unplumbed",
	"suspend_when_proxy_unhealthy", "ttl",
}

var egressSourceHonoured = map[string]bool{
	"name": true, "source_address": true, "ehlo_domain": true,
	"remote_port": true, "ttl": true,
	"ha_proxy_server": true, "ha_proxy_source_address": true,
	"socks5_proxy_server": true, "socks5_proxy_source_address": true,
	"socks5_proxy_username": true, "socks5_proxy_password": true,
	"suspend_when_unplumbed": true, "suspend_when_proxy_unhealthy": true,
}

const defaultSourceTTL = 60 * time.Second

// DecodeEgressSource decodes a make_egress_source table.
func DecodeEgressSource(v any) (*EgressSource, error) {
	s := EgressSource{TTL: defaultSourceTTL}
	o := NewObject(v, v, "struct EgressSource", egressSourceFields...)
	o.Str("name", &s.Name)
	o.IPAddr("source_address", &s.SourceAddress)
	o.Str("ehlo_domain", &s.EhloDomain)
	o.UintN("remote_port", &s.RemotePort, math.MaxUint16, "u16")
	o.proxyServer("ha_proxy_server", &s.HAProxyServer)
	o.IPAddr("ha_proxy_source_address", &s.HAProxySourceAddress)
	o.proxyServer("socks5_proxy_server", &s.Socks5ProxyServer)
	o.IPAddr("socks5_proxy_source_address", &s.Socks5ProxySourceAddress)
	o.Str("socks5_proxy_username", &s.Socks5ProxyUsername)
	o.KeySource("socks5_proxy_password", &s.Socks5ProxyPassword)
	o.suspendPolicy("suspend_when_unplumbed", &s.SuspendWhenUnplumbed)
	o.suspendPolicy("suspend_when_proxy_unhealthy", &s.SuspendWhenProxyUnhealthy)
	o.Duration("ttl", &s.TTL)
	if o.err == nil && s.Name == "" {
		o.Fail("missing field `name`")
	}
	if o.err == nil {
		if msg := checkProxy(&s); msg != "" {
			o.Fail(msg)
		}
	}
	if o.err != nil {
		return nil, o.err
	}
	s.Unimplemented = o.unimplemented(egressSourceFields, egressSourceHonoured)
	return &s, nil
}

// suspendPolicy reads {trigger='Immediate' | {Threshold='N/period'},
// duration=...}; trigger defaults to Immediate.
func (o *Object) suspendPolicy(key string, dst *map[string]any) {
	v, ok := o.Get(key)
	if !ok {
		return
	}
	p := NewObject(v, o.input, "struct SuspensionPolicy", "trigger", "duration")
	var d time.Duration
	p.Duration("duration", &d)
	out := map[string]any{}
	if t, ok := p.Get("trigger"); ok {
		switch x := t.(type) {
		case string:
			if x != "Immediate" {
				p.Fail("unknown variant `" + x + "`, expected `Immediate` or `Threshold`")
			}
			out["trigger"] = x
		case map[string]any:
			th := NewObject(x, o.input, "enum SuspensionTrigger", "Threshold")
			var spec string
			th.ThrottleSpec("Threshold", &spec)
			if th.err == nil && spec == "" {
				th.Fail("missing field `Threshold`")
			}
			p.Merge(th)
			out["trigger"] = map[string]any{"Threshold": spec}
		default:
			p.Fail("invalid type: " + Describe(t) + ", expected `Immediate` or {Threshold='N/period'}")
		}
	} else {
		// KumoMTA's SuspensionPolicy: trigger defaults to Immediate.
		out["trigger"] = "Immediate"
	}
	if p.err == nil && d == 0 {
		p.Fail("missing field `duration`")
	}
	if p.err != nil {
		o.Merge(p)
		return
	}
	out["duration"] = duration.Format(d)
	*dst = out
}

// UnspecifiedSource is the built-in "unspecified" source, used when no
// get_egress_source handler names it.
func UnspecifiedSource() EgressSource {
	return EgressSource{Name: "unspecified", TTL: defaultSourceTTL}
}
