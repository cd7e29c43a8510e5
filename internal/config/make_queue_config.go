package config

import (
	"math"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/kumogo/kumogo/internal/duration"
	"github.com/kumogo/kumogo/internal/jinja"
)

// queueConfigFields are the keys of kumo.make_queue_config (KumoMTA docs: "make_queue_config").
var queueConfigFields = []string{
	"retry_interval", "max_retry_interval", "max_age", "egress_pool",
	"max_message_rate", "protocol", "reap_interval", "refresh_interval",
	"refresh_strategy", "strategy", "timerwheel_tick_interval",
	"provider_name", "shrink_policy",
}

// DecodeQueueConfig decodes a make_queue_config table strictly on top of
// KumoMTA's defaults.
func DecodeQueueConfig(v any) (*QueueConfig, error) {
	c := DefaultQueueConfig()
	o := NewObject(v, v, "struct QueueConfig", queueConfigFields...)
	o.Duration("retry_interval", &c.RetryInterval)
	o.Duration("max_retry_interval", &c.MaxRetryInterval)
	o.Duration("max_age", &c.MaxAge)
	o.Str("egress_pool", &c.EgressPool)
	o.ThrottleSpec("max_message_rate", &c.MaxMessageRate)
	o.protocol("protocol", &c.Protocol)
	o.Duration("reap_interval", &c.ReapInterval)
	o.Duration("refresh_interval", &c.RefreshInterval)
	o.Enum("refresh_strategy", &c.RefreshStrategy, "Ttl", "Epoch")
	o.Enum("strategy", &c.Strategy, "TimerWheel", "SkipList", "SingletonTimerWheel", "SingletonTimerWheelV2")
	o.Duration("timerwheel_tick_interval", &c.TimerwheelTickInterval)
	o.Str("provider_name", &c.ProviderName)
	o.shrinkPolicy("shrink_policy", &c.ShrinkPolicy)
	if o.err != nil {
		return nil, o.err
	}
	c.Unimplemented = o.unimplemented(queueConfigFields, queueConfigHonoured)
	return &c, nil
}

// queueConfigHonoured are the make_queue_config keys the delivery engine
// honours; other given keys are listed in Unimplemented.
var queueConfigHonoured = map[string]bool{
	"retry_interval": true, "max_retry_interval": true, "max_age": true,
	"egress_pool": true, "max_message_rate": true, "protocol": true,
}

// protocol reads the queue `protocol` (an untagged enum in KumoMTA).
func (o *Object) protocol(key string, dst *QueueProtocol) {
	v, ok := o.Get(key)
	if !ok {
		return
	}
	m, ok := v.(map[string]any)
	if !ok {
		o.Fail("invalid type: " + Describe(v) + ", expected enum DeliveryProto: {smtp={...}}, {maildir_path=...} or {custom_lua={...}}")
		return
	}
	var p QueueProtocol
	switch {
	case m["smtp"] != nil:
		sub := NewObject(m, o.input, "enum DeliveryProto", "smtp")
		if sv, ok := sub.Get("smtp"); ok {
			s := NewObject(sv, o.input, "struct SmtpProtocol", "mx_list", "treat_mx_list_as_secure")
			s.mxList("mx_list", &p.MXList)
			s.Bool("treat_mx_list_as_secure", &p.TreatMXListAsSecure)
			sub.Merge(s)
		}
		o.Merge(sub)
	case m["maildir_path"] != nil:
		sub := NewObject(m, o.input, "enum DeliveryProto", "maildir_path", "dir_mode", "file_mode")
		sub.Str("maildir_path", &p.MaildirPath)
		for _, k := range []struct {
			key string
			dst **uint32
		}{{"dir_mode", &p.DirMode}, {"file_mode", &p.FileMode}} {
			if n, ok := sub.Uint(k.key, math.MaxUint32, "u32"); ok {
				u := uint32(n)
				*k.dst = &u
			}
		}
		if sub.err == nil && p.MaildirPath == "" {
			sub.Fail("invalid value: string \"\", expected a non-empty maildir_path")
		}
		if sub.err == nil {
			// a template that cannot compile fails here, where the
			// policy builds the config (at --validate for a queue
			// helper's data), not at the first delivery
			if _, err := jinja.Compile(p.MaildirPath); err != nil {
				sub.Fail("invalid value: maildir_path " + strconv.Quote(p.MaildirPath) + ": " + err.Error())
			}
		}
		o.Merge(sub)
	case m["custom_lua"] != nil:
		sub := NewObject(m, o.input, "enum DeliveryProto", "custom_lua")
		if lv, ok := sub.Get("custom_lua"); ok {
			p.BatchSize, p.MinBatchSize = 1, 1
			l := NewObject(lv, o.input, "struct LuaDeliveryProtocol", "constructor", "batch_size", "min_batch_size", "max_batch_latency")
			l.Str("constructor", &p.CustomLuaConstructor)
			l.UintN("batch_size", &p.BatchSize, math.MaxInt32, "usize")
			l.UintN("min_batch_size", &p.MinBatchSize, math.MaxInt32, "usize")
			l.Duration("max_batch_latency", &p.MaxBatchLatency)
			if l.err == nil && p.CustomLuaConstructor == "" {
				l.Fail("missing field `constructor`")
			}
			if l.err == nil && (p.BatchSize < 1 || p.MinBatchSize < 1) {
				l.Fail("invalid value: batch_size and min_batch_size must be at least 1")
			}
			sub.Merge(l)
		}
		o.Merge(sub)
	default:
		if len(m) == 0 {
			// {} is not a valid protocol in KumoMTA either.
			o.Fail("data did not match any variant of untagged enum DeliveryProto (expected {smtp={...}}, {maildir_path=...} or {custom_lua={...}})")
			return
		}
		o.Fail("data did not match any variant of untagged enum DeliveryProto: keys " + strings.Join(sortedKeys(m), ", ") + " (expected {smtp={...}}, {maildir_path=...} or {custom_lua={...}})")
	}
	if o.err == nil {
		*dst = p
	}
}

// mxList reads protocol.smtp.mx_list entries: "host", "host:port",
// "[ip]" / "[ip]:port" literals, or {name=..., addr="ip[:port]"}.
func (o *Object) mxList(key string, dst *[]MXListEntry) {
	items, ok := o.Seq(key, "a sequence of MX hosts")
	if !ok {
		return
	}
	out := make([]MXListEntry, 0, len(items))
	for _, it := range items {
		switch e := it.(type) {
		case string:
			if msg := checkMXName(e); msg != "" {
				o.Fail("invalid value: " + Describe(e) + ", expected " + msg)
				return
			}
			out = append(out, MXListEntry{Name: e})
		case map[string]any:
			r := NewObject(e, o.input, "struct ResolvedAddress", "name", "addr")
			var ent MXListEntry
			r.Str("name", &ent.Name)
			r.Str("addr", &ent.Addr)
			if r.err == nil && ent.Name == "" {
				r.Fail("missing field `name`")
			}
			if r.err == nil && ent.Addr == "" {
				r.Fail("missing field `addr`")
			}
			if r.err == nil {
				if _, err := netip.ParseAddr(ent.Addr); err != nil {
					if _, err := netip.ParseAddrPort(ent.Addr); err != nil {
						r.Fail("invalid value: " + Describe(ent.Addr) + ", expected an IP address or ip:port")
					}
				}
			}
			if r.err != nil {
				o.Merge(r)
				return
			}
			out = append(out, ent)
		default:
			o.Fail("invalid type: " + Describe(it) + ", expected a host name string or {name=..., addr=...}")
			return
		}
	}
	*dst = out
}

// checkMXName validates an mx_list host entry and returns what was
// expected when it is malformed.
func checkMXName(s string) string {
	const want = "a host name, host:port, [ip] or [ip]:port"
	if s == "" || strings.ContainsAny(s, " \t\r\n/@") {
		return want
	}
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return want
		}
		lit := s[1:end]
		if strings.HasPrefix(strings.ToLower(lit), "ipv6:") {
			lit = lit[5:]
		}
		// a port may be inside the brackets (ipv4 only) or after them
		portInside := false
		if _, err := netip.ParseAddr(lit); err != nil {
			ap, err := netip.ParseAddrPort(lit)
			if err != nil || !ap.Addr().Is4() {
				return want
			}
			portInside = true
		}
		rest := s[end+1:]
		if rest == "" {
			return ""
		}
		if portInside || rest[0] != ':' || !validPort(rest[1:]) {
			return want
		}
		return ""
	}
	if _, err := netip.ParseAddr(s); err == nil {
		return ""
	}
	if strings.Count(s, ":") > 1 {
		return want
	}
	if host, port, err := net.SplitHostPort(s); err == nil {
		if host == "" || !validPort(port) {
			return want
		}
	}
	return ""
}

func validPort(p string) bool {
	n, err := strconv.ParseUint(p, 10, 16)
	return err == nil && n > 0
}

// shrinkPolicy reads a list of {interval=duration, policy=variant}.
func (o *Object) shrinkPolicy(key string, dst *[]any) {
	items, ok := o.Seq(key, "a sequence")
	if !ok {
		return
	}
	out := make([]any, 0, len(items))
	for _, it := range items {
		e := NewObject(it, o.input, "struct ShrinkPolicyEntry", "interval", "policy")
		var iv time.Duration
		pol := ""
		e.Duration("interval", &iv)
		e.Enum("policy", &pol, memoryPolicies...)
		if e.err == nil && iv == 0 {
			e.Fail("missing field `interval`")
		}
		if e.err == nil && pol == "" {
			e.Fail("missing field `policy`")
		}
		if e.err != nil {
			o.Merge(e)
			return
		}
		out = append(out, map[string]any{"interval": duration.Format(iv), "policy": pol})
	}
	*dst = out
}

var memoryPolicies = []string{"ShrinkDataAndMeta", "ShrinkData", "NoShrink"}
