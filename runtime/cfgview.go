package runtime

import (
	"strconv"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/duration"
)

// field is one key of a configuration object as seen from Lua.
type field struct {
	key string
	val any // JSON-style Go value; nil = absent
}

// configView lists the readable fields of a configuration object (the
// userdata returned by the kumo.make_* constructors), in documentation
// order, with Lua-shaped values: durations as humantime strings, CIDR
// lists as arrays of strings, optional values absent when unset.
func configView(v any) ([]field, string) {
	switch c := v.(type) {
	case *config.ListenerDomain:
		return listenerDomainView(c), "ListenerDomain"
	case *config.QueueConfig:
		return queueConfigView(c), "QueueConfig"
	case *config.EgressPath:
		return egressPathView(c), "EgressPathConfig"
	case *config.EgressSource:
		return egressSourceView(c), "EgressSource"
	case *config.EgressPool:
		return egressPoolView(c), "EgressPool"
	}
	return nil, "ConfigObject"
}

func listenerDomainView(d *config.ListenerDomain) []field {
	return []field{
		{"relay_to", d.RelayTo},
		{"relay_from", cidrView(d.RelayFrom)},
		{"log_oob", d.LogOOB},
		{"log_arf", d.LogARF},
	}
}

func queueConfigView(c *config.QueueConfig) []field {
	return []field{
		{"retry_interval", duration.Format(c.RetryInterval)},
		{"max_retry_interval", optDuration(c.MaxRetryInterval)},
		{"max_age", duration.Format(c.MaxAge)},
		{"egress_pool", optString(c.EgressPool)},
		{"max_message_rate", optString(c.MaxMessageRate)},
		{"protocol", protocolView(&c.Protocol)},
		{"reap_interval", duration.Format(c.ReapInterval)},
		{"refresh_interval", duration.Format(c.RefreshInterval)},
		{"refresh_strategy", c.RefreshStrategy},
		{"strategy", c.Strategy},
		{"timerwheel_tick_interval", optDuration(c.TimerwheelTickInterval)},
		{"provider_name", optString(c.ProviderName)},
		{"shrink_policy", append([]any{}, c.ShrinkPolicy...)},
	}
}

func protocolView(p *config.QueueProtocol) map[string]any {
	switch p.Kind() {
	case "maildir":
		m := map[string]any{"maildir_path": p.MaildirPath}
		if p.DirMode != nil {
			m["dir_mode"] = int64(*p.DirMode)
		}
		if p.FileMode != nil {
			m["file_mode"] = int64(*p.FileMode)
		}
		return m
	case "custom_lua":
		return map[string]any{"custom_lua": map[string]any{
			"constructor":       p.CustomLuaConstructor,
			"batch_size":        int64(p.BatchSize),
			"min_batch_size":    int64(p.MinBatchSize),
			"max_batch_latency": duration.Format(p.MaxBatchLatency),
		}}
	}
	mx := make([]any, len(p.MXList))
	for i, e := range p.MXList {
		if e.Addr != "" {
			mx[i] = map[string]any{"name": e.Name, "addr": e.Addr}
		} else {
			mx[i] = e.Name
		}
	}
	return map[string]any{"smtp": map[string]any{
		"mx_list":                 mx,
		"treat_mx_list_as_secure": p.TreatMXListAsSecure,
	}}
}

func egressPathView(p *config.EgressPath) []field {
	limits := map[string]any{}
	for k, n := range p.AdditionalConnectionLimits {
		limits[k] = limitView(n, p.AdditionalConnectionLimitsLocal[k])
	}
	return []field{
		{"connection_limit", limitView(p.ConnectionLimit, p.ConnectionLimitLocal)},
		{"additional_connection_limits", limits},
		{"enable_tls", p.EnableTLS},
		{"enable_mta_sts", p.EnableMTASTS},
		{"enable_dane", p.EnableDANE},
		{"enable_pipelining", p.EnablePipelining},
		{"enable_rset", p.EnableRSET},
		{"enable_chunking", p.EnableChunking},
		{"tls_prefer_openssl", p.TLSPreferOpenSSL},
		{"tls_certificate", keySourceView(p.TLSCertificate)},
		{"tls_private_key", keySourceView(p.TLSPrivateKey)},
		{"openssl_cipher_list", optString(p.OpenSSLCipherList)},
		{"openssl_cipher_suites", optString(p.OpenSSLCipherSuites)},
		{"openssl_options", optString(p.OpenSSLOptions)},
		{"rustls_cipher_suites", stringsView(p.RustlsCipherSuites)},
		{"connect_timeout", duration.Format(p.ConnectTimeout)},
		{"banner_timeout", duration.Format(p.BannerTimeout)},
		{"ehlo_timeout", duration.Format(p.EhloTimeout)},
		{"mail_from_timeout", duration.Format(p.MailFromTimeout)},
		{"rcpt_to_timeout", duration.Format(p.RcptToTimeout)},
		{"data_timeout", duration.Format(p.DataTimeout)},
		{"data_dot_timeout", duration.Format(p.DataDotTimeout)},
		{"rset_timeout", duration.Format(p.RsetTimeout)},
		{"idle_timeout", duration.Format(p.IdleTimeout)},
		{"starttls_timeout", duration.Format(p.StartTLSTimeout)},
		{"auth_timeout", duration.Format(p.AuthTimeout)},
		{"system_shutdown_timeout", optDuration(p.SystemShutdownTimeout)},
		{"max_ready", int64(p.MaxReady)},
		{"consecutive_connection_failures_before_delay", int64(p.ConsecutiveConnectionFailuresBeforeDelay)},
		{"smtp_port", int64(p.SMTPPort)},
		{"smtp_auth_plain_username", optString(p.SMTPAuthPlainUsername)},
		{"smtp_auth_plain_password", keySourceView(p.SMTPAuthPlainPassword)},
		{"allow_smtp_auth_plain_without_tls", p.AllowSMTPAuthPlainWithoutTLS},
		{"allow_smtp_auth_plain_without_valid_certificate", p.AllowSMTPAuthPlainWithoutValidCertificate},
		{"max_message_rate", optString(p.MaxMessageRate)},
		{"additional_message_rate_throttles", stringMapView(p.AdditionalMessageRateThrottles)},
		{"source_selection_rate", optString(p.SourceSelectionRate)},
		{"additional_source_selection_rates", stringMapView(p.AdditionalSourceSelectionRates)},
		{"max_connection_rate", optString(p.MaxConnectionRate)},
		{"max_deliveries_per_connection", int64(p.MaxDeliveriesPerConnection)},
		{"max_recipients_per_batch", int64(p.MaxRecipientsPerBatch)},
		{"prohibited_hosts", cidrView(p.ProhibitedHosts)},
		{"skip_hosts", cidrView(p.SkipHosts)},
		{"ip_lookup_strategy", optString(p.IPLookupStrategy)},
		{"ehlo_domain", optString(p.EhloDomain)},
		{"aggressive_connection_opening", p.AggressiveConnectionOpening},
		{"refresh_interval", duration.Format(p.RefreshInterval)},
		{"refresh_strategy", p.RefreshStrategy},
		{"dispatcher_wakeup_strategy", p.DispatcherWakeupStrategy},
		{"maintainer_wakeup_strategy", p.MaintainerWakeupStrategy},
		{"provider_name", optString(p.ProviderName)},
		{"remember_broken_tls", optDuration(p.RememberBrokenTLS)},
		{"opportunistic_tls_reconnect_on_failed_handshake", p.OpportunisticTLSReconnectOnFailedHandshake},
		{"use_lmtp", p.UseLMTP},
		{"reconnect_strategy", p.ReconnectStrategy},
		{"readyq_pool_name", optString(p.ReadyQPoolName)},
		{"low_memory_reduction_policy", p.LowMemoryReductionPolicy},
		{"no_memory_reduction_policy", p.NoMemoryReductionPolicy},
		{"try_next_host_on_transport_error", p.TryNextHostOnTransportError},
		{"ignore_8bit_checks", p.Ignore8BitChecks},
		{"dispatcher_progress_watchdog_timeout", optDuration(p.DispatcherProgressWatchdogTimeout)},
	}
}

func egressSourceView(s *config.EgressSource) []field {
	return []field{
		{"name", s.Name},
		{"source_address", optString(s.SourceAddress)},
		{"ehlo_domain", optString(s.EhloDomain)},
		{"remote_port", optInt(s.RemotePort)},
		{"ha_proxy_server", optString(s.HAProxyServer)},
		{"ha_proxy_source_address", optString(s.HAProxySourceAddress)},
		{"socks5_proxy_server", optString(s.Socks5ProxyServer)},
		{"socks5_proxy_source_address", optString(s.Socks5ProxySourceAddress)},
		{"socks5_proxy_username", optString(s.Socks5ProxyUsername)},
		{"socks5_proxy_password", keySourceView(s.Socks5ProxyPassword)},
		{"suspend_when_unplumbed", optMap(s.SuspendWhenUnplumbed)},
		{"suspend_when_proxy_unhealthy", optMap(s.SuspendWhenProxyUnhealthy)},
		{"ttl", duration.Format(s.TTL)},
	}
}

func egressPoolView(p *config.EgressPool) []field {
	entries := make([]any, len(p.Entries))
	for i, e := range p.Entries {
		entries[i] = map[string]any{"name": e.Name, "weight": int64(e.Weight)}
	}
	return []field{
		{"name", p.Name},
		{"entries", entries},
		{"ttl", duration.Format(p.TTL)},
	}
}

// configsAsMaps replaces configuration objects inside a toGo result by
// their Lua-visible fields, so that json_encode(cfg) shows the keys a
// policy wrote rather than Go field names.
func configsAsMaps(v any) any {
	switch x := v.(type) {
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = configsAsMaps(e)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = configsAsMaps(e)
		}
		return out
	}
	fields, _ := configView(v)
	if fields == nil {
		return v
	}
	m := make(map[string]any, len(fields))
	for _, f := range fields {
		if f.val != nil {
			m[f.key] = f.val
		}
	}
	return m
}

func optString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func optInt(n int) any {
	if n == 0 {
		return nil
	}
	return int64(n)
}

func optDuration(d time.Duration) any {
	if d == 0 {
		return nil
	}
	return duration.Format(d)
}

func optMap(m map[string]any) any {
	if m == nil {
		return nil
	}
	return m
}

func limitView(n int, local bool) any {
	if local {
		return "local:" + strconv.Itoa(n)
	}
	return int64(n)
}

func stringsView(l []string) []any {
	out := make([]any, len(l))
	for i, s := range l {
		out[i] = s
	}
	return out
}

func stringMapView(m map[string]string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func cidrView(l config.CIDRList) []any {
	out := make([]any, len(l))
	for i, p := range l {
		if p.IsSingleIP() {
			out[i] = p.Addr().String()
		} else {
			out[i] = p.String()
		}
	}
	return out
}

func keySourceView(k config.KeySource) any {
	switch {
	case k.Path != "":
		return k.Path
	case k.Data != nil:
		return map[string]any{"key_data": string(k.Data)}
	case k.Vault != nil:
		m := make(map[string]any, len(k.Vault))
		for key, v := range k.Vault {
			m[key] = v
		}
		return m
	}
	return nil
}

// configUD returns the configuration object in argument 1.
func configUD(L *lua.LState) any {
	ud := L.CheckUserData(1)
	return ud.Value
}

// cfgIndex reads fields of configuration objects back (params.relay_to,
// cfg.retry_interval).
func (st *state) cfgIndex(L *lua.LState) int {
	fields, _ := configView(configUD(L))
	key := L.CheckString(2)
	for _, f := range fields {
		if f.key == key {
			L.Push(st.fromGo(f.val))
			return 1
		}
	}
	L.Push(lua.LNil)
	return 1
}

// cfgPairs is __pairs: it iterates over a snapshot table of the fields.
func (st *state) cfgPairs(L *lua.LState) int {
	fields, _ := configView(configUD(L))
	t := L.CreateTable(0, len(fields))
	for _, f := range fields {
		if f.val != nil {
			t.RawSetString(f.key, st.fromGo(f.val))
		}
	}
	L.Push(st.next)
	L.Push(t)
	L.Push(lua.LNil)
	return 3
}

// cfgLen is __len: the number of fields that have a value.
func (st *state) cfgLen(L *lua.LState) int {
	fields, _ := configView(configUD(L))
	n := 0
	for _, f := range fields {
		if f.val != nil {
			n++
		}
	}
	L.Push(lua.LNumber(n))
	return 1
}

// cfgToString renders "EgressPool{...json...}".
func (st *state) cfgToString(L *lua.LState) int {
	v := configUD(L)
	_, name := configView(v)
	js, err := jsonEncode(configsAsMaps(v), false)
	if err != nil {
		js = "{}"
	}
	L.Push(lua.LString(name + js))
	return 1
}
