package runtime

import (
	"math"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/throttle"
)

// queueConfigFields are the keys of kumo.make_queue_config (§3.3).
var queueConfigFields = []string{
	"retry_interval", "max_retry_interval", "max_age", "egress_pool",
	"max_message_rate", "protocol", "reap_interval", "refresh_interval",
	"refresh_strategy", "strategy", "timerwheel_tick_interval",
	"provider_name", "shrink_policy",
}

// decodeQueueConfig decodes a make_queue_config table strictly on top of
// KumoMTA's defaults.
func decodeQueueConfig(v any) (*config.QueueConfig, error) {
	c := config.DefaultQueueConfig()
	o := newObj(v, v, "struct QueueConfig", queueConfigFields...)
	o.dur("retry_interval", &c.RetryInterval)
	o.dur("max_retry_interval", &c.MaxRetryInterval)
	o.dur("max_age", &c.MaxAge)
	o.str("egress_pool", &c.EgressPool)
	o.throttleSpec("max_message_rate", &c.MaxMessageRate)
	o.protocol("protocol", &c.Protocol)
	o.dur("reap_interval", &c.ReapInterval)
	o.dur("refresh_interval", &c.RefreshInterval)
	o.enum("refresh_strategy", &c.RefreshStrategy, "Ttl", "Epoch")
	o.enum("strategy", &c.Strategy, "TimerWheel", "SkipList", "SingletonTimerWheel", "SingletonTimerWheelV2")
	o.dur("timerwheel_tick_interval", &c.TimerwheelTickInterval)
	o.str("provider_name", &c.ProviderName)
	o.shrinkPolicy("shrink_policy", &c.ShrinkPolicy)
	if o.err != nil {
		return nil, o.err
	}
	c.Unimplemented = o.unimplemented(queueConfigFields, queueConfigHonoured)
	switch c.Protocol.Kind() {
	case "maildir":
		c.Unimplemented = append(c.Unimplemented, "protocol.maildir_path")
	case "custom_lua":
		c.Unimplemented = append(c.Unimplemented, "protocol.custom_lua")
	}
	if c.Protocol.TreatMXListAsSecure {
		c.Unimplemented = append(c.Unimplemented, "protocol.smtp.treat_mx_list_as_secure")
	}
	return &c, nil
}

// queueConfigHonoured are the make_queue_config keys the delivery engine
// honours (issue 4); other given keys are listed in Unimplemented.
var queueConfigHonoured = map[string]bool{
	"retry_interval": true, "max_retry_interval": true, "max_age": true,
	"egress_pool": true, "max_message_rate": true, "protocol": true,
}

// merge copies the first error of a nested decoder into o.
func (o *obj) merge(sub *obj) {
	if sub.err != nil && o.err == nil {
		o.err = sub.err
	}
}

// uintN reads a non-negative integer into dst with a serde kind name.
func (o *obj) uintN(key string, dst *int, limit int64, kind string) {
	if n, ok := o.uint(key, limit, kind); ok {
		*dst = int(n)
	}
}

// parseThrottle validates a throttle spec string.
func parseThrottle(s string) error {
	_, err := throttle.Parse(s)
	return err
}

// throttleSpec reads a throttle spec ("100/hour", "local:10/s,max_burst=5").
func (o *obj) throttleSpec(key string, dst *string) {
	v, ok := o.get(key)
	if !ok {
		return
	}
	s, ok := v.(string)
	if !ok {
		o.fail("invalid type: " + describe(v) + ", expected a throttle spec string like \"100/hour\"")
		return
	}
	if err := parseThrottle(s); err != nil {
		o.fail("invalid value: " + describe(v) + ", expected a throttle spec like \"100/hour\" (" + err.Error() + ")")
		return
	}
	*dst = s
}

// throttleMap reads a map of name → throttle spec.
func (o *obj) throttleMap(key string, dst *map[string]string) {
	var m map[string]any
	o.mapValue(key, &m)
	if o.err != nil || m == nil {
		return
	}
	out := make(map[string]string, len(m))
	for _, k := range sortedKeys(m) {
		sub := &obj{m: map[string]any{k: m[k]}, input: o.input}
		var s string
		sub.throttleSpec(k, &s)
		if sub.err != nil {
			o.merge(sub)
			return
		}
		out[k] = s
	}
	*dst = out
}

// parseLimit reads a connection limit: an integer or a string with
// optional "local:" prefix and ',' / '_' digit separators.
func parseLimit(v any) (n int, local bool, msg string) {
	const want = "a connection limit like 32, \"1,000\" or \"local:20\""
	switch x := v.(type) {
	case int64:
		if x < 0 || x > math.MaxInt32 {
			return 0, false, "invalid value: " + describe(v) + ", expected " + want
		}
		return int(x), false, ""
	case string:
		s := strings.TrimSpace(x)
		s, local = strings.CutPrefix(s, "local:")
		digits := strings.NewReplacer(",", "", "_", "").Replace(strings.TrimSpace(s))
		u, err := strconv.ParseUint(digits, 10, 31)
		if err != nil || digits == "" || digits[0] == '+' {
			return 0, false, "invalid value: " + describe(v) + ", expected " + want
		}
		return int(u), local, ""
	}
	return 0, false, "invalid type: " + describe(v) + ", expected " + want
}

func (o *obj) limit(key string, dst *int, local *bool) {
	v, ok := o.get(key)
	if !ok {
		return
	}
	n, l, msg := parseLimit(v)
	if msg != "" {
		o.fail(msg)
		return
	}
	*dst, *local = n, l
}

// ipAddr reads an IP address string (IpAddr).
func (o *obj) ipAddr(key string, dst *string) {
	o.parsedString(key, dst, "expected an IP address", func(s string) (string, error) {
		a, err := netip.ParseAddr(s)
		return a.String(), err
	})
}

// sockAddr reads an "ip:port" string (SocketAddr).
func (o *obj) sockAddr(key string, dst *string) {
	o.parsedString(key, dst, "expected a socket address like \"10.0.0.1:5000\"", func(s string) (string, error) {
		ap, err := netip.ParseAddrPort(s)
		return ap.String(), err
	})
}

// parsedString reads a string that parse must accept, storing parse's
// canonical form; a rejected value is an "invalid value" error saying what
// was expected.
func (o *obj) parsedString(key string, dst *string, expected string, parse func(string) (string, error)) {
	var s string
	o.str(key, &s)
	if o.err != nil || s == "" {
		return
	}
	v, err := parse(s)
	if err != nil {
		o.fail("invalid value: " + describe(s) + ", " + expected)
		return
	}
	*dst = v
}

// protocol reads the queue `protocol` (an untagged enum in KumoMTA).
func (o *obj) protocol(key string, dst *config.QueueProtocol) {
	v, ok := o.get(key)
	if !ok {
		return
	}
	m, ok := v.(map[string]any)
	if !ok {
		o.fail("invalid type: " + describe(v) + ", expected enum DeliveryProto: {smtp={...}}, {maildir_path=...} or {custom_lua={...}}")
		return
	}
	var p config.QueueProtocol
	switch {
	case m["smtp"] != nil:
		sub := newObj(m, o.input, "enum DeliveryProto", "smtp")
		if sv, ok := sub.get("smtp"); ok {
			s := newObj(sv, o.input, "struct SmtpProtocol", "mx_list", "treat_mx_list_as_secure")
			s.mxList("mx_list", &p.MXList)
			s.boolean("treat_mx_list_as_secure", &p.TreatMXListAsSecure)
			sub.merge(s)
		}
		o.merge(sub)
	case m["maildir_path"] != nil:
		sub := newObj(m, o.input, "enum DeliveryProto", "maildir_path", "dir_mode", "file_mode")
		sub.str("maildir_path", &p.MaildirPath)
		for _, k := range []struct {
			key string
			dst **uint32
		}{{"dir_mode", &p.DirMode}, {"file_mode", &p.FileMode}} {
			if n, ok := sub.uint(k.key, math.MaxUint32, "u32"); ok {
				u := uint32(n)
				*k.dst = &u
			}
		}
		if sub.err == nil && p.MaildirPath == "" {
			sub.fail("invalid value: string \"\", expected a non-empty maildir_path")
		}
		o.merge(sub)
	case m["custom_lua"] != nil:
		sub := newObj(m, o.input, "enum DeliveryProto", "custom_lua")
		if lv, ok := sub.get("custom_lua"); ok {
			p.BatchSize, p.MinBatchSize = 1, 1
			l := newObj(lv, o.input, "struct LuaDeliveryProtocol", "constructor", "batch_size", "min_batch_size", "max_batch_latency")
			l.str("constructor", &p.CustomLuaConstructor)
			l.uintN("batch_size", &p.BatchSize, math.MaxInt32, "usize")
			l.uintN("min_batch_size", &p.MinBatchSize, math.MaxInt32, "usize")
			l.dur("max_batch_latency", &p.MaxBatchLatency)
			if l.err == nil && p.CustomLuaConstructor == "" {
				l.fail("missing field `constructor`")
			}
			if l.err == nil && (p.BatchSize < 1 || p.MinBatchSize < 1) {
				l.fail("invalid value: batch_size and min_batch_size must be at least 1")
			}
			sub.merge(l)
		}
		o.merge(sub)
	default:
		if len(m) == 0 {
			// {} is not a valid protocol in KumoMTA either.
			o.fail("data did not match any variant of untagged enum DeliveryProto (expected {smtp={...}}, {maildir_path=...} or {custom_lua={...}})")
			return
		}
		o.fail("data did not match any variant of untagged enum DeliveryProto: keys " + strings.Join(sortedKeys(m), ", ") + " (expected {smtp={...}}, {maildir_path=...} or {custom_lua={...}})")
	}
	if o.err == nil {
		*dst = p
	}
}

// seq reads key as a Lua sequence (an empty table counts as an empty one).
// ok is false when the key is absent or not a sequence (the latter is
// recorded as an "invalid type" error expecting what).
func (o *obj) seq(key, what string) (items []any, ok bool) {
	v, present := o.get(key)
	if !present {
		return nil, false
	}
	switch x := v.(type) {
	case []any:
		return x, true
	case map[string]any:
		if len(x) == 0 {
			return nil, true
		}
		o.fail("invalid type: map, expected " + what)
	default:
		o.fail("invalid type: " + describe(v) + ", expected " + what)
	}
	return nil, false
}

// mxList reads protocol.smtp.mx_list entries: "host", "host:port",
// "[ip]" / "[ip]:port" literals, or {name=..., addr="ip[:port]"}.
func (o *obj) mxList(key string, dst *[]config.MXListEntry) {
	items, ok := o.seq(key, "a sequence of MX hosts")
	if !ok {
		return
	}
	out := make([]config.MXListEntry, 0, len(items))
	for _, it := range items {
		switch e := it.(type) {
		case string:
			if msg := checkMXName(e); msg != "" {
				o.fail("invalid value: " + describe(e) + ", expected " + msg)
				return
			}
			out = append(out, config.MXListEntry{Name: e})
		case map[string]any:
			r := newObj(e, o.input, "struct ResolvedAddress", "name", "addr")
			var ent config.MXListEntry
			r.str("name", &ent.Name)
			r.str("addr", &ent.Addr)
			if r.err == nil && ent.Name == "" {
				r.fail("missing field `name`")
			}
			if r.err == nil && ent.Addr == "" {
				r.fail("missing field `addr`")
			}
			if r.err == nil {
				if _, err := netip.ParseAddr(ent.Addr); err != nil {
					if _, err := netip.ParseAddrPort(ent.Addr); err != nil {
						r.fail("invalid value: " + describe(ent.Addr) + ", expected an IP address or ip:port")
					}
				}
			}
			if r.err != nil {
				o.merge(r)
				return
			}
			out = append(out, ent)
		default:
			o.fail("invalid type: " + describe(it) + ", expected a host name string or {name=..., addr=...}")
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
func (o *obj) shrinkPolicy(key string, dst *[]any) {
	items, ok := o.seq(key, "a sequence")
	if !ok {
		return
	}
	out := make([]any, 0, len(items))
	for _, it := range items {
		e := newObj(it, o.input, "struct ShrinkPolicyEntry", "interval", "policy")
		var iv time.Duration
		pol := ""
		e.dur("interval", &iv)
		e.enum("policy", &pol, memoryPolicies...)
		if e.err == nil && iv == 0 {
			e.fail("missing field `interval`")
		}
		if e.err == nil && pol == "" {
			e.fail("missing field `policy`")
		}
		if e.err != nil {
			o.merge(e)
			return
		}
		out = append(out, map[string]any{"interval": formatDuration(iv), "policy": pol})
	}
	*dst = out
}

var memoryPolicies = []string{"ShrinkDataAndMeta", "ShrinkData", "NoShrink"}

// egressPathFields are the keys of kumo.make_egress_path (§3.3) plus
// kumogo's enable_chunking.
var egressPathFields = []string{
	"connection_limit", "additional_connection_limits", "enable_tls",
	"enable_mta_sts", "enable_dane", "enable_pipelining", "enable_rset",
	"enable_chunking", "tls_prefer_openssl", "tls_certificate", "tls_private_key",
	"openssl_cipher_list", "openssl_cipher_suites", "openssl_options",
	"rustls_cipher_suites", "connect_timeout", "banner_timeout", "ehlo_timeout",
	"mail_from_timeout", "rcpt_to_timeout", "data_timeout", "data_dot_timeout",
	"rset_timeout", "idle_timeout", "starttls_timeout", "auth_timeout",
	"system_shutdown_timeout", "max_ready",
	"consecutive_connection_failures_before_delay", "smtp_port",
	"smtp_auth_plain_username", "smtp_auth_plain_password",
	"allow_smtp_auth_plain_without_tls",
	"allow_smtp_auth_plain_without_valid_certificate", "max_message_rate",
	"additional_message_rate_throttles", "source_selection_rate",
	"additional_source_selection_rates", "max_connection_rate",
	"max_deliveries_per_connection", "max_recipients_per_batch",
	"prohibited_hosts", "skip_hosts", "ip_lookup_strategy", "ehlo_domain",
	"aggressive_connection_opening", "refresh_interval", "refresh_strategy",
	"dispatcher_wakeup_strategy", "maintainer_wakeup_strategy", "provider_name",
	"remember_broken_tls", "opportunistic_tls_reconnect_on_failed_handshake",
	"use_lmtp", "reconnect_strategy", "readyq_pool_name",
	"low_memory_reduction_policy", "no_memory_reduction_policy",
	"try_next_host_on_transport_error", "ignore_8bit_checks",
	"dispatcher_progress_watchdog_timeout",
}

// egressPathHonoured are the make_egress_path keys the delivery engine
// honours (issue 4); any other key given with a non-default-looking value
// is listed in EgressPath.Unimplemented.
var egressPathHonoured = map[string]bool{
	"connection_limit": true, "enable_tls": true, "prohibited_hosts": true,
	"skip_hosts": true, "smtp_port": true, "max_deliveries_per_connection": true,
	"max_recipients_per_batch": true, "connect_timeout": true,
	"banner_timeout": true, "ehlo_timeout": true, "mail_from_timeout": true,
	"rcpt_to_timeout": true, "data_timeout": true, "data_dot_timeout": true,
	"rset_timeout": true, "idle_timeout": true, "starttls_timeout": true,
	"auth_timeout": true, "max_message_rate": true, "max_connection_rate": true,
	"max_ready": true, "enable_pipelining": true, "enable_rset": true,
	"reconnect_strategy": true, "ehlo_domain": true, "enable_chunking": true,
	"smtp_auth_plain_username": true, "smtp_auth_plain_password": true,
	"allow_smtp_auth_plain_without_tls": true, "ignore_8bit_checks": true,
	"opportunistic_tls_reconnect_on_failed_handshake": true,
	"tls_certificate": true, "tls_private_key": true, "ip_lookup_strategy": true,
	"additional_connection_limits": true, "additional_message_rate_throttles": true,
	"source_selection_rate": true, "additional_source_selection_rates": true,
}

// decodeEgressPath decodes a make_egress_path table strictly on top of
// KumoMTA's defaults.
func decodeEgressPath(v any) (*config.EgressPath, error) {
	p := config.DefaultEgressPath()
	o := newObj(v, v, "struct EgressPathConfig", egressPathFields...)
	o.limit("connection_limit", &p.ConnectionLimit, &p.ConnectionLimitLocal)
	o.additionalLimits("additional_connection_limits", &p)
	o.enum("enable_tls", &p.EnableTLS, "Opportunistic", "OpportunisticInsecure", "Required", "RequiredInsecure", "Disabled")
	o.boolean("enable_mta_sts", &p.EnableMTASTS)
	o.boolean("enable_dane", &p.EnableDANE)
	o.boolean("enable_pipelining", &p.EnablePipelining)
	o.boolean("enable_rset", &p.EnableRSET)
	o.boolean("enable_chunking", &p.EnableChunking)
	o.boolean("tls_prefer_openssl", &p.TLSPreferOpenSSL)
	o.keySource("tls_certificate", &p.TLSCertificate)
	o.keySource("tls_private_key", &p.TLSPrivateKey)
	o.str("openssl_cipher_list", &p.OpenSSLCipherList)
	o.str("openssl_cipher_suites", &p.OpenSSLCipherSuites)
	o.str("openssl_options", &p.OpenSSLOptions)
	o.strList("rustls_cipher_suites", &p.RustlsCipherSuites)
	o.dur("connect_timeout", &p.ConnectTimeout)
	o.dur("banner_timeout", &p.BannerTimeout)
	o.dur("ehlo_timeout", &p.EhloTimeout)
	o.dur("mail_from_timeout", &p.MailFromTimeout)
	o.dur("rcpt_to_timeout", &p.RcptToTimeout)
	o.dur("data_timeout", &p.DataTimeout)
	o.dur("data_dot_timeout", &p.DataDotTimeout)
	o.dur("rset_timeout", &p.RsetTimeout)
	o.dur("idle_timeout", &p.IdleTimeout)
	o.dur("starttls_timeout", &p.StartTLSTimeout)
	o.dur("auth_timeout", &p.AuthTimeout)
	o.dur("system_shutdown_timeout", &p.SystemShutdownTimeout)
	o.integer("max_ready", &p.MaxReady)
	o.integer("consecutive_connection_failures_before_delay", &p.ConsecutiveConnectionFailuresBeforeDelay)
	o.uintN("smtp_port", &p.SMTPPort, math.MaxUint16, "u16")
	o.str("smtp_auth_plain_username", &p.SMTPAuthPlainUsername)
	o.keySource("smtp_auth_plain_password", &p.SMTPAuthPlainPassword)
	o.boolean("allow_smtp_auth_plain_without_tls", &p.AllowSMTPAuthPlainWithoutTLS)
	o.boolean("allow_smtp_auth_plain_without_valid_certificate", &p.AllowSMTPAuthPlainWithoutValidCertificate)
	o.throttleSpec("max_message_rate", &p.MaxMessageRate)
	o.throttleMap("additional_message_rate_throttles", &p.AdditionalMessageRateThrottles)
	o.throttleSpec("source_selection_rate", &p.SourceSelectionRate)
	o.throttleMap("additional_source_selection_rates", &p.AdditionalSourceSelectionRates)
	o.throttleSpec("max_connection_rate", &p.MaxConnectionRate)
	o.integer("max_deliveries_per_connection", &p.MaxDeliveriesPerConnection)
	o.integer("max_recipients_per_batch", &p.MaxRecipientsPerBatch)
	o.cidrList("prohibited_hosts", &p.ProhibitedHosts)
	o.cidrList("skip_hosts", &p.SkipHosts)
	o.enum("ip_lookup_strategy", &p.IPLookupStrategy, "Ipv4Only", "Ipv6Only", "Ipv4AndIpv6", "Ipv6thenIpv4", "Ipv4thenIpv6")
	o.str("ehlo_domain", &p.EhloDomain)
	o.boolean("aggressive_connection_opening", &p.AggressiveConnectionOpening)
	o.dur("refresh_interval", &p.RefreshInterval)
	o.enum("refresh_strategy", &p.RefreshStrategy, "Ttl", "Epoch")
	o.enum("dispatcher_wakeup_strategy", &p.DispatcherWakeupStrategy, "Aggressive", "Relaxed")
	o.enum("maintainer_wakeup_strategy", &p.MaintainerWakeupStrategy, "Aggressive", "Relaxed")
	o.str("provider_name", &p.ProviderName)
	o.dur("remember_broken_tls", &p.RememberBrokenTLS)
	o.boolean("opportunistic_tls_reconnect_on_failed_handshake", &p.OpportunisticTLSReconnectOnFailedHandshake)
	o.boolean("use_lmtp", &p.UseLMTP)
	o.enum("reconnect_strategy", &p.ReconnectStrategy, "ConnectNextHost", "TerminateSession", "ReconnectSameHost")
	o.str("readyq_pool_name", &p.ReadyQPoolName)
	o.enum("low_memory_reduction_policy", &p.LowMemoryReductionPolicy, memoryPolicies...)
	o.enum("no_memory_reduction_policy", &p.NoMemoryReductionPolicy, memoryPolicies...)
	o.boolean("try_next_host_on_transport_error", &p.TryNextHostOnTransportError)
	o.boolean("ignore_8bit_checks", &p.Ignore8BitChecks)
	o.dur("dispatcher_progress_watchdog_timeout", &p.DispatcherProgressWatchdogTimeout)
	if o.err == nil && p.SMTPPort == 0 {
		o.fail("invalid value: integer `0`, expected a port number between 1 and 65535")
	}
	if o.err != nil {
		return nil, o.err
	}
	p.Unimplemented = o.unimplemented(egressPathFields, egressPathHonoured)
	return &p, nil
}

// unimplemented lists the given keys that are not honoured, skipping
// values that cannot change behaviour (false, empty tables, empty
// strings).
func (o *obj) unimplemented(fields []string, honoured map[string]bool) []string {
	var out []string
	for _, k := range fields {
		if honoured[k] {
			continue
		}
		v, ok := o.get(k)
		if !ok || v == false || v == "" {
			continue
		}
		switch x := v.(type) {
		case map[string]any:
			if len(x) == 0 {
				continue
			}
		case []any:
			if len(x) == 0 {
				continue
			}
		}
		out = append(out, k)
	}
	return out
}

// additionalLimits reads additional_connection_limits (name → limit).
func (o *obj) additionalLimits(key string, p *config.EgressPath) {
	var m map[string]any
	o.mapValue(key, &m)
	if o.err != nil || m == nil {
		return
	}
	p.AdditionalConnectionLimits = make(map[string]int, len(m))
	p.AdditionalConnectionLimitsLocal = make(map[string]bool)
	for _, k := range sortedKeys(m) {
		n, local, msg := parseLimit(m[k])
		if msg != "" {
			o.fail(msg)
			return
		}
		p.AdditionalConnectionLimits[k] = n
		if local {
			p.AdditionalConnectionLimitsLocal[k] = true
		}
	}
}

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
}

const defaultSourceTTL = 60 * time.Second

// decodeEgressSource decodes a make_egress_source table.
func decodeEgressSource(v any) (*config.EgressSource, error) {
	s := config.EgressSource{TTL: defaultSourceTTL}
	o := newObj(v, v, "struct EgressSource", egressSourceFields...)
	o.str("name", &s.Name)
	o.ipAddr("source_address", &s.SourceAddress)
	o.str("ehlo_domain", &s.EhloDomain)
	o.uintN("remote_port", &s.RemotePort, math.MaxUint16, "u16")
	o.sockAddr("ha_proxy_server", &s.HAProxyServer)
	o.ipAddr("ha_proxy_source_address", &s.HAProxySourceAddress)
	o.sockAddr("socks5_proxy_server", &s.Socks5ProxyServer)
	o.ipAddr("socks5_proxy_source_address", &s.Socks5ProxySourceAddress)
	o.str("socks5_proxy_username", &s.Socks5ProxyUsername)
	o.str("socks5_proxy_password", &s.Socks5ProxyPassword)
	o.suspendPolicy("suspend_when_unplumbed", &s.SuspendWhenUnplumbed)
	o.suspendPolicy("suspend_when_proxy_unhealthy", &s.SuspendWhenProxyUnhealthy)
	o.dur("ttl", &s.TTL)
	if o.err == nil && s.Name == "" {
		o.fail("missing field `name`")
	}
	if o.err != nil {
		return nil, o.err
	}
	s.Unimplemented = o.unimplemented(egressSourceFields, egressSourceHonoured)
	return &s, nil
}

// suspendPolicy reads {trigger='Immediate' | {Threshold='N/period'},
// duration=...}; trigger defaults to Immediate.
func (o *obj) suspendPolicy(key string, dst *map[string]any) {
	v, ok := o.get(key)
	if !ok {
		return
	}
	p := newObj(v, o.input, "struct SuspensionPolicy", "trigger", "duration")
	var d time.Duration
	p.dur("duration", &d)
	out := map[string]any{}
	if t, ok := p.get("trigger"); ok {
		switch x := t.(type) {
		case string:
			if x != "Immediate" {
				p.fail("unknown variant `" + x + "`, expected `Immediate` or `Threshold`")
			}
			out["trigger"] = x
		case map[string]any:
			th := newObj(x, o.input, "enum SuspensionTrigger", "Threshold")
			var spec string
			th.throttleSpec("Threshold", &spec)
			if th.err == nil && spec == "" {
				th.fail("missing field `Threshold`")
			}
			p.merge(th)
			out["trigger"] = map[string]any{"Threshold": spec}
		default:
			p.fail("invalid type: " + describe(t) + ", expected `Immediate` or {Threshold='N/period'}")
		}
	} else {
		// KumoMTA's SuspensionPolicy: trigger defaults to Immediate.
		out["trigger"] = "Immediate"
	}
	if p.err == nil && d == 0 {
		p.fail("missing field `duration`")
	}
	if p.err != nil {
		o.merge(p)
		return
	}
	out["duration"] = formatDuration(d)
	*dst = out
}

// decodeEgressPool decodes a make_egress_pool table.
func decodeEgressPool(v any) (*config.EgressPool, error) {
	p := config.EgressPool{TTL: defaultSourceTTL}
	o := newObj(v, v, "struct EgressPool", "name", "entries", "ttl")
	o.str("name", &p.Name)
	o.dur("ttl", &p.TTL)
	if ev, ok := o.get("entries"); ok {
		var items []any
		switch x := ev.(type) {
		case []any:
			items = x
		case map[string]any:
			if len(x) != 0 {
				o.fail("invalid type: map, expected a sequence of pool entries")
			}
		default:
			o.fail("invalid type: " + describe(ev) + ", expected a sequence of pool entries")
		}
		p.Entries = make([]config.EgressPoolEntry, 0, len(items))
		for _, it := range items {
			e := newObj(it, o.input, "struct EgressPoolEntry", "name", "weight")
			ent := config.EgressPoolEntry{Weight: 1}
			e.str("name", &ent.Name)
			e.uintN("weight", &ent.Weight, math.MaxUint32, "u32")
			if e.err == nil && ent.Name == "" {
				e.fail("missing field `name`")
			}
			if e.err != nil {
				o.merge(e)
				break
			}
			p.Entries = append(p.Entries, ent)
		}
	}
	if o.err == nil && p.Name == "" {
		o.fail("missing field `name`")
	}
	if o.err != nil {
		return nil, o.err
	}
	return &p, nil
}

// Defaults for the built-in "unspecified" source and pool.
func unspecifiedSource() config.EgressSource {
	return config.EgressSource{Name: "unspecified", TTL: defaultSourceTTL}
}

func unspecifiedPool() config.EgressPool {
	return config.EgressPool{
		Name:    "unspecified",
		Entries: []config.EgressPoolEntry{{Name: "unspecified", Weight: 1}},
		TTL:     defaultSourceTTL,
	}
}
