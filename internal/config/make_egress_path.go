package config

import "math"

// egressPathFields are the keys of kumo.make_egress_path (KumoMTA docs: "make_egress_path") plus
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
// honours; any other key given with a non-default-looking value
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
	"refresh_interval": true, "refresh_strategy": true,
	"source_selection_rate": true, "additional_source_selection_rates": true,
}

// DecodeEgressPath decodes a make_egress_path table strictly on top of
// KumoMTA's defaults.
func DecodeEgressPath(v any) (*EgressPath, error) {
	p := DefaultEgressPath()
	o := NewObject(v, v, "struct EgressPathConfig", egressPathFields...)
	o.limit("connection_limit", &p.ConnectionLimit, &p.ConnectionLimitLocal)
	o.additionalLimits("additional_connection_limits", &p)
	o.Enum("enable_tls", &p.EnableTLS, "Opportunistic", "OpportunisticInsecure", "Required", "RequiredInsecure", "Disabled")
	o.Bool("enable_mta_sts", &p.EnableMTASTS)
	o.Bool("enable_dane", &p.EnableDANE)
	o.Bool("enable_pipelining", &p.EnablePipelining)
	o.Bool("enable_rset", &p.EnableRSET)
	o.Bool("enable_chunking", &p.EnableChunking)
	o.Bool("tls_prefer_openssl", &p.TLSPreferOpenSSL)
	o.KeySource("tls_certificate", &p.TLSCertificate)
	o.KeySource("tls_private_key", &p.TLSPrivateKey)
	o.Str("openssl_cipher_list", &p.OpenSSLCipherList)
	o.Str("openssl_cipher_suites", &p.OpenSSLCipherSuites)
	o.Str("openssl_options", &p.OpenSSLOptions)
	o.StrList("rustls_cipher_suites", &p.RustlsCipherSuites)
	o.Duration("connect_timeout", &p.ConnectTimeout)
	o.Duration("banner_timeout", &p.BannerTimeout)
	o.Duration("ehlo_timeout", &p.EhloTimeout)
	o.Duration("mail_from_timeout", &p.MailFromTimeout)
	o.Duration("rcpt_to_timeout", &p.RcptToTimeout)
	o.Duration("data_timeout", &p.DataTimeout)
	o.Duration("data_dot_timeout", &p.DataDotTimeout)
	o.Duration("rset_timeout", &p.RsetTimeout)
	o.Duration("idle_timeout", &p.IdleTimeout)
	o.Duration("starttls_timeout", &p.StartTLSTimeout)
	o.Duration("auth_timeout", &p.AuthTimeout)
	o.Duration("system_shutdown_timeout", &p.SystemShutdownTimeout)
	o.Int("max_ready", &p.MaxReady)
	o.Int("consecutive_connection_failures_before_delay", &p.ConsecutiveConnectionFailuresBeforeDelay)
	o.UintN("smtp_port", &p.SMTPPort, math.MaxUint16, "u16")
	o.Str("smtp_auth_plain_username", &p.SMTPAuthPlainUsername)
	o.KeySource("smtp_auth_plain_password", &p.SMTPAuthPlainPassword)
	o.Bool("allow_smtp_auth_plain_without_tls", &p.AllowSMTPAuthPlainWithoutTLS)
	o.Bool("allow_smtp_auth_plain_without_valid_certificate", &p.AllowSMTPAuthPlainWithoutValidCertificate)
	o.ThrottleSpec("max_message_rate", &p.MaxMessageRate)
	o.ThrottleMap("additional_message_rate_throttles", &p.AdditionalMessageRateThrottles)
	o.ThrottleSpec("source_selection_rate", &p.SourceSelectionRate)
	o.ThrottleMap("additional_source_selection_rates", &p.AdditionalSourceSelectionRates)
	o.ThrottleSpec("max_connection_rate", &p.MaxConnectionRate)
	o.Int("max_deliveries_per_connection", &p.MaxDeliveriesPerConnection)
	o.Int("max_recipients_per_batch", &p.MaxRecipientsPerBatch)
	o.CIDRList("prohibited_hosts", &p.ProhibitedHosts)
	o.CIDRList("skip_hosts", &p.SkipHosts)
	o.Enum("ip_lookup_strategy", &p.IPLookupStrategy, "Ipv4Only", "Ipv6Only", "Ipv4AndIpv6", "Ipv6thenIpv4", "Ipv4thenIpv6")
	o.Str("ehlo_domain", &p.EhloDomain)
	o.Bool("aggressive_connection_opening", &p.AggressiveConnectionOpening)
	o.Duration("refresh_interval", &p.RefreshInterval)
	o.Enum("refresh_strategy", &p.RefreshStrategy, "Ttl", "Epoch")
	o.Enum("dispatcher_wakeup_strategy", &p.DispatcherWakeupStrategy, "Aggressive", "Relaxed")
	o.Enum("maintainer_wakeup_strategy", &p.MaintainerWakeupStrategy, "Aggressive", "Relaxed")
	o.Str("provider_name", &p.ProviderName)
	o.Duration("remember_broken_tls", &p.RememberBrokenTLS)
	o.Bool("opportunistic_tls_reconnect_on_failed_handshake", &p.OpportunisticTLSReconnectOnFailedHandshake)
	o.Bool("use_lmtp", &p.UseLMTP)
	o.Enum("reconnect_strategy", &p.ReconnectStrategy, "ConnectNextHost", "TerminateSession", "ReconnectSameHost")
	o.Str("readyq_pool_name", &p.ReadyQPoolName)
	o.Enum("low_memory_reduction_policy", &p.LowMemoryReductionPolicy, memoryPolicies...)
	o.Enum("no_memory_reduction_policy", &p.NoMemoryReductionPolicy, memoryPolicies...)
	o.Bool("try_next_host_on_transport_error", &p.TryNextHostOnTransportError)
	o.Bool("ignore_8bit_checks", &p.Ignore8BitChecks)
	o.Duration("dispatcher_progress_watchdog_timeout", &p.DispatcherProgressWatchdogTimeout)
	if o.err == nil && p.SMTPPort == 0 {
		o.Fail("invalid value: integer `0`, expected a port number between 1 and 65535")
	}
	if o.err != nil {
		return nil, o.err
	}
	p.Unimplemented = o.unimplemented(egressPathFields, egressPathHonoured)
	return &p, nil
}

// additionalLimits reads additional_connection_limits (name → limit).
func (o *Object) additionalLimits(key string, p *EgressPath) {
	var m map[string]any
	o.Map(key, &m)
	if o.err != nil || m == nil {
		return
	}
	p.AdditionalConnectionLimits = make(map[string]int, len(m))
	p.AdditionalConnectionLimitsLocal = make(map[string]bool)
	for _, k := range sortedKeys(m) {
		n, local, msg := parseLimit(m[k])
		if msg != "" {
			o.Fail(msg)
			return
		}
		p.AdditionalConnectionLimits[k] = n
		if local {
			p.AdditionalConnectionLimitsLocal[k] = true
		}
	}
}
