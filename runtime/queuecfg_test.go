package runtime

import (
	"context"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kumogo/kumogo/internal/config"
)

// construct evaluates a constructor expression in an event and returns
// the configuration object (a Go pointer) or the error.
func construct(t *testing.T, expr string) (any, error) {
	t.Helper()
	r := newRuntime(t, "kumo.on('t', function() return "+expr+" end)\n")
	out, err := r.Call(context.Background(), "t")
	if err != nil {
		return nil, err
	}
	if len(out) != 1 {
		t.Fatalf("%s: %d results", expr, len(out))
	}
	return out[0], nil
}

func mustConstruct[T any](t *testing.T, expr string) *T {
	t.Helper()
	v, err := construct(t, expr)
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	c, ok := v.(*T)
	if !ok {
		t.Fatalf("%s: got %T", expr, v)
	}
	return c
}

func TestQueueConfigDefaults(t *testing.T) {
	c := mustConstruct[config.QueueConfig](t, "kumo.make_queue_config{}")
	if !reflect.DeepEqual(*c, config.DefaultQueueConfig()) {
		t.Fatalf("got %+v", *c)
	}
	// nil values are absent keys
	c = mustConstruct[config.QueueConfig](t, "kumo.make_queue_config{retry_interval=os.getenv('KUMOGO_UNSET_VARIABLE')}")
	if c.RetryInterval != 20*time.Minute {
		t.Fatalf("retry_interval = %v", c.RetryInterval)
	}
}

func TestQueueConfigAllKeys(t *testing.T) {
	c := mustConstruct[config.QueueConfig](t, `kumo.make_queue_config{
  retry_interval = '5s',
  max_retry_interval = '1 hour',
  max_age = 3600,
  egress_pool = 'pool-a',
  max_message_rate = '1,000/hour',
  protocol = { smtp = { mx_list = { 'mx1.example.com', 'mx2.example.com:2525', '[10.0.0.1]', '[10.0.0.2]:26', '[IPv6:::1]', { name = 'sink', addr = '127.0.0.1:2026' } }, treat_mx_list_as_secure = true } },
  reap_interval = '5m',
  refresh_interval = 30,
  refresh_strategy = 'Epoch',
  strategy = 'SkipList',
  timerwheel_tick_interval = '2s',
  provider_name = 'gmail',
  shrink_policy = { { interval = '1m', policy = 'ShrinkData' } },
}`)
	want := config.QueueConfig{
		RetryInterval:    5 * time.Second,
		MaxRetryInterval: time.Hour,
		MaxAge:           time.Hour,
		EgressPool:       "pool-a",
		MaxMessageRate:   "1,000/hour",
		Protocol: config.QueueProtocol{
			MXList: []config.MXListEntry{
				{Name: "mx1.example.com"}, {Name: "mx2.example.com:2525"}, {Name: "[10.0.0.1]"},
				{Name: "[10.0.0.2]:26"}, {Name: "[IPv6:::1]"}, {Name: "sink", Addr: "127.0.0.1:2026"},
			},
			TreatMXListAsSecure: true,
		},
		ReapInterval:           5 * time.Minute,
		RefreshInterval:        30 * time.Second,
		RefreshStrategy:        "Epoch",
		Strategy:               "SkipList",
		TimerwheelTickInterval: 2 * time.Second,
		ProviderName:           "gmail",
		ShrinkPolicy:           []any{map[string]any{"interval": "1m", "policy": "ShrinkData"}},
		Unimplemented: []string{"reap_interval", "refresh_interval", "refresh_strategy", "strategy",
			"timerwheel_tick_interval", "provider_name", "shrink_policy"},
	}
	if !reflect.DeepEqual(*c, want) {
		t.Fatalf("got  %+v\nwant %+v", *c, want)
	}
}

func TestQueueProtocolForms(t *testing.T) {
	c := mustConstruct[config.QueueConfig](t, `kumo.make_queue_config{protocol={smtp={}}}`)
	if c.Protocol.Kind() != "smtp" || c.Protocol.MXList != nil {
		t.Fatalf("smtp: %+v", c.Protocol)
	}
	c = mustConstruct[config.QueueConfig](t, `kumo.make_queue_config{protocol={maildir_path='/var/tmp/maildir/{{meta.x}}', dir_mode=tonumber('755', 8), file_mode=420}}`)
	if p := c.Protocol; p.Kind() != "maildir" || p.MaildirPath != "/var/tmp/maildir/{{meta.x}}" || *p.DirMode != 0o755 || *p.FileMode != 0o644 {
		t.Fatalf("maildir: %+v", p)
	}
	if c.Unimplemented != nil {
		t.Fatalf("maildir unimplemented: %v", c.Unimplemented)
	}
	c = mustConstruct[config.QueueConfig](t, `kumo.make_queue_config{protocol={maildir_path='/m'}}`)
	if p := c.Protocol; p.DirMode != nil || p.FileMode != nil {
		t.Fatalf("maildir modes: %+v", p)
	}
	c = mustConstruct[config.QueueConfig](t, `kumo.make_queue_config{protocol={custom_lua={constructor='make.sender'}}}`)
	if p := c.Protocol; p.Kind() != "custom_lua" || p.CustomLuaConstructor != "make.sender" || p.BatchSize != 1 || p.MinBatchSize != 1 || p.MaxBatchLatency != 0 {
		t.Fatalf("custom_lua: %+v", p)
	}
	c = mustConstruct[config.QueueConfig](t, `kumo.make_queue_config{protocol={custom_lua={constructor='c', batch_size=10, min_batch_size=5, max_batch_latency='2s'}}}`)
	if p := c.Protocol; p.BatchSize != 10 || p.MinBatchSize != 5 || p.MaxBatchLatency != 2*time.Second {
		t.Fatalf("custom_lua: %+v", p)
	}
	if c.Unimplemented != nil {
		t.Fatalf("custom_lua unimplemented: %v", c.Unimplemented)
	}
	c = mustConstruct[config.QueueConfig](t, `kumo.make_queue_config{retry_interval='1m', max_retry_interval='1h', max_age='1d', egress_pool='p', max_message_rate='1/s', protocol={smtp={mx_list={'a'}}}}`)
	if c.Unimplemented != nil {
		t.Fatalf("honoured keys listed as unimplemented: %v", c.Unimplemented)
	}
}

func TestEgressPathDefaults(t *testing.T) {
	p := mustConstruct[config.EgressPath](t, "kumo.make_egress_path{}")
	if !reflect.DeepEqual(*p, config.DefaultEgressPath()) {
		t.Fatalf("got %+v", *p)
	}
}

func TestEgressPathAllKeys(t *testing.T) {
	p := mustConstruct[config.EgressPath](t, `kumo.make_egress_path{
  connection_limit = 'local:20',
  additional_connection_limits = { shared = '1_000', mine = 'local:5', n = 7 },
  enable_tls = 'Required',
  enable_mta_sts = false,
  enable_dane = true,
  enable_pipelining = false,
  enable_rset = false,
  enable_chunking = false,
  tls_prefer_openssl = true,
  tls_certificate = '/etc/client.pem',
  tls_private_key = { key_data = 'KEY' },
  openssl_cipher_list = 'HIGH',
  openssl_cipher_suites = 'TLS_AES_256_GCM_SHA384',
  openssl_options = 'NO_TLSV1',
  rustls_cipher_suites = { 'TLS13_AES_256_GCM_SHA384' },
  connect_timeout = '1s', banner_timeout = '2s', ehlo_timeout = '3s', mail_from_timeout = '4s',
  rcpt_to_timeout = '5s', data_timeout = '6s', data_dot_timeout = '7s', rset_timeout = '8s',
  idle_timeout = '9s', starttls_timeout = '10s', auth_timeout = '11s', system_shutdown_timeout = '12s',
  max_ready = 10,
  consecutive_connection_failures_before_delay = 3,
  smtp_port = 2026,
  smtp_auth_plain_username = 'user',
  smtp_auth_plain_password = { key_data = 'pw' },
  allow_smtp_auth_plain_without_tls = true,
  allow_smtp_auth_plain_without_valid_certificate = true,
  max_message_rate = '100/s',
  additional_message_rate_throttles = { a = '10/m' },
  source_selection_rate = '5/h',
  additional_source_selection_rates = { b = 'local:1/d' },
  max_connection_rate = '20/30minute,max_burst=5',
  max_deliveries_per_connection = 50,
  max_recipients_per_batch = 20,
  prohibited_hosts = {},
  skip_hosts = { '10.0.0.0/8', '192.168.1.1' },
  ip_lookup_strategy = 'Ipv4Only',
  ehlo_domain = 'out.example.com',
  aggressive_connection_opening = true,
  refresh_interval = '2m',
  refresh_strategy = 'Epoch',
  dispatcher_wakeup_strategy = 'Relaxed',
  maintainer_wakeup_strategy = 'Relaxed',
  provider_name = 'yahoo',
  remember_broken_tls = '1h',
  opportunistic_tls_reconnect_on_failed_handshake = true,
  use_lmtp = true,
  reconnect_strategy = 'TerminateSession',
  readyq_pool_name = 'rq',
  low_memory_reduction_policy = 'ShrinkData',
  no_memory_reduction_policy = 'NoShrink',
  try_next_host_on_transport_error = true,
  ignore_8bit_checks = true,
  dispatcher_progress_watchdog_timeout = '90s',
}`)
	s := time.Second
	want := config.EgressPath{
		ConnectionLimit:                 20,
		ConnectionLimitLocal:            true,
		AdditionalConnectionLimits:      map[string]int{"shared": 1000, "mine": 5, "n": 7},
		AdditionalConnectionLimitsLocal: map[string]bool{"mine": true},
		EnableTLS:                       "Required",
		EnableDANE:                      true,
		TLSPreferOpenSSL:                true,
		TLSCertificate:                  config.KeySource{Path: "/etc/client.pem"},
		TLSPrivateKey:                   config.KeySource{Data: []byte("KEY")},
		OpenSSLCipherList:               "HIGH",
		OpenSSLCipherSuites:             "TLS_AES_256_GCM_SHA384",
		OpenSSLOptions:                  "NO_TLSV1",
		RustlsCipherSuites:              []string{"TLS13_AES_256_GCM_SHA384"},
		ConnectTimeout:                  1 * s, BannerTimeout: 2 * s, EhloTimeout: 3 * s, MailFromTimeout: 4 * s,
		RcptToTimeout: 5 * s, DataTimeout: 6 * s, DataDotTimeout: 7 * s, RsetTimeout: 8 * s,
		IdleTimeout: 9 * s, StartTLSTimeout: 10 * s, AuthTimeout: 11 * s, SystemShutdownTimeout: 12 * s,
		MaxReady:                                   10,
		ConsecutiveConnectionFailuresBeforeDelay:   3,
		SMTPPort:                                   2026,
		SMTPAuthPlainUsername:                      "user",
		SMTPAuthPlainPassword:                      config.KeySource{Data: []byte("pw")},
		AllowSMTPAuthPlainWithoutTLS:               true,
		AllowSMTPAuthPlainWithoutValidCertificate:  true,
		MaxMessageRate:                             "100/s",
		AdditionalMessageRateThrottles:             map[string]string{"a": "10/m"},
		SourceSelectionRate:                        "5/h",
		AdditionalSourceSelectionRates:             map[string]string{"b": "local:1/d"},
		MaxConnectionRate:                          "20/30minute,max_burst=5",
		MaxDeliveriesPerConnection:                 50,
		MaxRecipientsPerBatch:                      20,
		ProhibitedHosts:                            config.CIDRList{},
		SkipHosts:                                  config.CIDRList{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.1.1/32")},
		IPLookupStrategy:                           "Ipv4Only",
		EhloDomain:                                 "out.example.com",
		AggressiveConnectionOpening:                true,
		RefreshInterval:                            2 * time.Minute,
		RefreshStrategy:                            "Epoch",
		DispatcherWakeupStrategy:                   "Relaxed",
		MaintainerWakeupStrategy:                   "Relaxed",
		ProviderName:                               "yahoo",
		RememberBrokenTLS:                          time.Hour,
		OpportunisticTLSReconnectOnFailedHandshake: true,
		UseLMTP:                           true,
		ReconnectStrategy:                 "TerminateSession",
		ReadyQPoolName:                    "rq",
		TryNextHostOnTransportError:       true,
		Ignore8BitChecks:                  true,
		LowMemoryReductionPolicy:          "ShrinkData",
		NoMemoryReductionPolicy:           "NoShrink",
		DispatcherProgressWatchdogTimeout: 90 * s,
		Unimplemented: []string{
			"enable_dane", "tls_prefer_openssl",
			"openssl_cipher_list", "openssl_cipher_suites", "openssl_options",
			"rustls_cipher_suites", "system_shutdown_timeout", "consecutive_connection_failures_before_delay",
			"allow_smtp_auth_plain_without_valid_certificate",
			"aggressive_connection_opening",
			"dispatcher_wakeup_strategy", "maintainer_wakeup_strategy", "provider_name",
			"remember_broken_tls", "use_lmtp",
			"readyq_pool_name", "low_memory_reduction_policy", "no_memory_reduction_policy",
			"try_next_host_on_transport_error", "dispatcher_progress_watchdog_timeout"},
	}
	if !reflect.DeepEqual(*p, want) {
		t.Fatalf("got  %+v\nwant %+v", *p, want)
	}
}

func TestEgressPathHonouredKeysNotUnimplemented(t *testing.T) {
	p := mustConstruct[config.EgressPath](t, `kumo.make_egress_path{
  connection_limit = 5, enable_tls = 'Disabled', prohibited_hosts = {}, skip_hosts = {'10.0.0.0/8'},
  smtp_port = 2026, max_deliveries_per_connection = 10, max_recipients_per_batch = 2, idle_timeout = 1,
  connect_timeout = 1, max_message_rate = '1/s', max_connection_rate = '1/s', max_ready = 3,
  enable_pipelining = false, enable_rset = false, reconnect_strategy = 'ReconnectSameHost',
  ehlo_domain = 'x', enable_chunking = false, enable_mta_sts = false, use_lmtp = false,
}`)
	if p.Unimplemented != nil {
		t.Fatalf("Unimplemented = %v", p.Unimplemented)
	}
	if p.ConnectionLimit != 5 || p.ConnectionLimitLocal || p.EnableTLS != "Disabled" || len(p.ProhibitedHosts) != 0 || p.EnableChunking {
		t.Fatalf("got %+v", p)
	}
}

func TestConnectionLimitForms(t *testing.T) {
	for in, want := range map[string]struct {
		n     int
		local bool
	}{
		"32": {32, false}, "'1,000'": {1000, false}, "'1_000'": {1000, false},
		"'local:20'": {20, true}, "' local:1,500 '": {1500, true}, "0": {0, false},
	} {
		p := mustConstruct[config.EgressPath](t, "kumo.make_egress_path{connection_limit="+in+"}")
		if p.ConnectionLimit != want.n || p.ConnectionLimitLocal != want.local {
			t.Errorf("%s: got %d local=%v", in, p.ConnectionLimit, p.ConnectionLimitLocal)
		}
	}
}

func TestEgressSourceAndPool(t *testing.T) {
	s := mustConstruct[config.EgressSource](t, `kumo.make_egress_source{name='ip-1', source_address='10.0.0.1', ehlo_domain='mta1.example.com', remote_port=2525}`)
	if !reflect.DeepEqual(*s, config.EgressSource{Name: "ip-1", SourceAddress: "10.0.0.1", EhloDomain: "mta1.example.com", RemotePort: 2525, TTL: time.Minute}) {
		t.Fatalf("source = %+v", *s)
	}
	s = mustConstruct[config.EgressSource](t, `kumo.make_egress_source{
  name='p', ttl='5m', ha_proxy_server='10.0.0.9:5000', ha_proxy_source_address='10.0.0.2',
  suspend_when_unplumbed={trigger='Immediate', duration='1m'},
  suspend_when_proxy_unhealthy={trigger={Threshold='3/min'}, duration=30},
}`)
	want := config.EgressSource{
		Name: "p", TTL: 5 * time.Minute, HAProxyServer: "10.0.0.9:5000", HAProxySourceAddress: "10.0.0.2",
		SuspendWhenUnplumbed:      map[string]any{"trigger": "Immediate", "duration": "1m"},
		SuspendWhenProxyUnhealthy: map[string]any{"trigger": map[string]any{"Threshold": "3/min"}, "duration": "30s"},
	}
	if !reflect.DeepEqual(*s, want) {
		t.Fatalf("source = %+v\nwant     %+v", *s, want)
	}
	if proto, server, src, ok := s.Proxy(); !ok || proto != "haproxy" || server != "10.0.0.9:5000" || src.String() != "10.0.0.2" {
		t.Fatalf("Proxy() = %q %v %v %v", proto, server, src, ok)
	}
	// The password is a KeySource, as in KumoMTA: a string is a file path.
	s = mustConstruct[config.EgressSource](t, `kumo.make_egress_source{
  name='s', socks5_proxy_server='[::1]:1080', socks5_proxy_source_address='::2',
  socks5_proxy_username='u', socks5_proxy_password={key_data='pw'},
}`)
	want = config.EgressSource{
		Name: "s", TTL: time.Minute, Socks5ProxyServer: "[::1]:1080", Socks5ProxySourceAddress: "::2",
		Socks5ProxyUsername: "u", Socks5ProxyPassword: config.KeySource{Data: []byte("pw")},
	}
	if !reflect.DeepEqual(*s, want) {
		t.Fatalf("source = %+v\nwant     %+v", *s, want)
	}
	if proto, server, src, ok := s.Proxy(); !ok || proto != "socks5" || server != "[::1]:1080" || src.String() != "::2" {
		t.Fatalf("Proxy() = %q %v %v %v", proto, server, src, ok)
	}
	// A proxy may be named by host name, resolved at connection time.
	s = mustConstruct[config.EgressSource](t, `kumo.make_egress_source{name='n', ha_proxy_server='Proxy.Example.com.:5000', ha_proxy_source_address='10.0.0.1'}`)
	if _, server, _, ok := s.Proxy(); !ok || server != "proxy.example.com:5000" {
		t.Fatalf("named proxy: %q %v", server, ok)
	}
	s = mustConstruct[config.EgressSource](t, `kumo.make_egress_source{name='f', socks5_proxy_server='127.0.0.1:1080', socks5_proxy_source_address='127.0.0.2', socks5_proxy_username='u', socks5_proxy_password='/etc/pw'}`)
	if s.Socks5ProxyPassword.Path != "/etc/pw" {
		t.Fatalf("password = %+v", s.Socks5ProxyPassword)
	}

	// KumoMTA's SuspensionPolicy defaults trigger to Immediate.
	s = mustConstruct[config.EgressSource](t, `kumo.make_egress_source{name='d', suspend_when_unplumbed={duration='30s'}}`)
	if got := s.SuspendWhenUnplumbed; !reflect.DeepEqual(got, map[string]any{"trigger": "Immediate", "duration": "30s"}) {
		t.Fatalf("suspend_when_unplumbed = %#v", got)
	}

	p := mustConstruct[config.EgressPool](t, `kumo.make_egress_pool{name='pool', entries={{name='ip-1'}, {name='ip-2', weight=3}, {name='off', weight=0}}, ttl=10}`)
	wantPool := config.EgressPool{Name: "pool", TTL: 10 * time.Second, Entries: []config.EgressPoolEntry{{Name: "ip-1", Weight: 1}, {Name: "ip-2", Weight: 3}, {Name: "off", Weight: 0}}}
	if !reflect.DeepEqual(*p, wantPool) {
		t.Fatalf("pool = %+v", *p)
	}
	p = mustConstruct[config.EgressPool](t, `kumo.make_egress_pool{name='empty'}`)
	if p.Entries != nil || p.TTL != time.Minute {
		t.Fatalf("pool = %+v", *p)
	}
}

func TestQueueEgressDecodeErrors(t *testing.T) {
	cases := []struct {
		expr, want, not string
	}{
		// unknown keys never say "invalid"
		{`kumo.make_queue_config{retry_intervall='1m'}`, "deserialize error: unknown field `retry_intervall`, expected one of `retry_interval`, `max_retry_interval`", "invalid"},
		{`kumo.make_egress_path{conection_limit=1}`, "unknown field `conection_limit`, expected one of `connection_limit`", "invalid"},
		{`kumo.make_egress_path{mx_rollup=true}`, "unknown field `mx_rollup`", "invalid"},
		{`kumo.make_egress_source{name='a', bogus=1}`, "unknown field `bogus`, expected one of `name`", "invalid"},
		{`kumo.make_egress_pool{name='a', entries={{name='x', wieght=1}}}`, "unknown field `wieght`, expected `name` or `weight`", "invalid"},
		{`kumo.make_queue_config{protocol={smtp={mx_lst={}}}}`, "unknown field `mx_lst`, expected `mx_list` or `treat_mx_list_as_secure`", "invalid"},
		{`kumo.make_queue_config{protocol={smtp={}, extra=1}}`, "unknown field `extra`, expected `smtp`", "invalid"},
		{`kumo.make_queue_config{protocol={custom_lua={constructor='x', batchsize=1}}}`, "unknown field `batchsize`", "invalid"},
		// type errors say "invalid type"
		{`kumo.make_queue_config{retry_interval=true}`, "invalid type: boolean `true`, expected a duration", ""},
		{`kumo.make_queue_config{egress_pool=1}`, "invalid type: integer `1`, expected a string", ""},
		{`kumo.make_queue_config{max_message_rate=100}`, "invalid type: integer `100`, expected a throttle spec", ""},
		{`kumo.make_queue_config{protocol='smtp'}`, "invalid type: string \"smtp\", expected enum DeliveryProto", ""},
		{`kumo.make_queue_config{protocol={smtp={mx_list='mx.example.com'}}}`, "invalid type: string \"mx.example.com\", expected a sequence of MX hosts", ""},
		{`kumo.make_queue_config{protocol={smtp={mx_list={1}}}}`, "invalid type: integer `1`, expected a host name", ""},
		{`kumo.make_queue_config{shrink_policy='x'}`, "invalid type: string \"x\", expected a sequence", ""},
		{`kumo.make_egress_path{connection_limit=true}`, "invalid type: boolean `true`, expected a connection limit", ""},
		{`kumo.make_egress_path{enable_tls=true}`, "invalid type: boolean `true`, expected variant identifier", ""},
		{`kumo.make_egress_path{smtp_port='25'}`, "invalid type: string \"25\", expected u16", ""},
		{`kumo.make_egress_path{max_ready=1.5}`, "invalid type: floating point `1.5`, expected usize", ""},
		{`kumo.make_egress_path{prohibited_hosts='127.0.0.1'}`, "invalid type: string \"127.0.0.1\", expected a sequence", ""},
		{`kumo.make_egress_path{enable_rset='no'}`, "invalid type: string \"no\", expected a boolean", ""},
		{`kumo.make_egress_pool{name='p', entries={{name='x', weight='1'}}}`, "invalid type: string \"1\", expected u32", ""},
		{`kumo.make_egress_source{name=1}`, "invalid type: integer `1`, expected a string", ""},
		// bad values
		{`kumo.make_queue_config{max_message_rate='100 per hour'}`, "invalid value: string \"100 per hour\", expected a throttle spec", ""},
		{`kumo.make_queue_config{max_message_rate='10/fortnight'}`, "invalid value", ""},
		{`kumo.make_queue_config{strategy='Heap'}`, "unknown variant `Heap`, expected one of `TimerWheel`", ""},
		{`kumo.make_queue_config{refresh_strategy='Never'}`, "unknown variant `Never`, expected `Ttl` or `Epoch`", ""},
		{`kumo.make_queue_config{protocol={}}`, "did not match any variant of untagged enum DeliveryProto", ""},
		{`kumo.make_queue_config{protocol={lmtp={}}}`, "did not match any variant of untagged enum DeliveryProto", ""},
		{`kumo.make_queue_config{protocol={custom_lua={}}}`, "missing field `constructor`", ""},
		{`kumo.make_queue_config{protocol={smtp={mx_list={'mx example'}}}}`, "invalid value: string \"mx example\"", ""},
		{`kumo.make_queue_config{protocol={smtp={mx_list={'[10.0.0.300]'}}}}`, "invalid value", ""},
		{`kumo.make_queue_config{protocol={smtp={mx_list={'host:99999'}}}}`, "invalid value", ""},
		{`kumo.make_queue_config{protocol={smtp={mx_list={{name='x'}}}}}`, "missing field `addr`", ""},
		{`kumo.make_queue_config{protocol={smtp={mx_list={{name='x', addr='not-an-ip'}}}}}`, "invalid value: string \"not-an-ip\", expected an IP address", ""},
		{`kumo.make_queue_config{shrink_policy={{interval='1m', policy='Squash'}}}`, "unknown variant `Squash`", ""},
		{`kumo.make_egress_path{connection_limit='lots'}`, "invalid value: string \"lots\", expected a connection limit", ""},
		{`kumo.make_egress_path{connection_limit=-1}`, "invalid value: integer `-1`", ""},
		{`kumo.make_egress_path{enable_tls='Always'}`, "unknown variant `Always`, expected one of `Opportunistic`, `OpportunisticInsecure`, `Required`, `RequiredInsecure`, `Disabled`", ""},
		{`kumo.make_egress_path{reconnect_strategy='Retry'}`, "unknown variant `Retry`", ""},
		{`kumo.make_egress_path{prohibited_hosts={'192.168.1.1/24'}}`, "invalid value: invalid CIDR \"192.168.1.1/24\": host bits are set", ""},
		{`kumo.make_egress_path{skip_hosts={'not-an-ip'}}`, "invalid value", ""},
		{`kumo.make_egress_path{smtp_port=70000}`, "invalid value: integer `70000`, expected u16", ""},
		{`kumo.make_egress_path{smtp_port=0}`, "expected a port number", ""},
		{`kumo.make_egress_path{max_connection_rate='x/y'}`, "invalid value", ""},
		{`kumo.make_egress_path{additional_message_rate_throttles={a='fast'}}`, "invalid value: string \"fast\"", ""},
		{`kumo.make_egress_path{idle_timeout='soon'}`, "invalid value: string \"soon\", expected a duration", ""},
		{`kumo.make_egress_path{tls_certificate={path='x'}}`, "untagged enum KeySource", ""},
		{`kumo.make_egress_source{}`, "missing field `name`", ""},
		{`kumo.make_egress_source{name='a', source_address='10.0.0.1/32'}`, "invalid value: string \"10.0.0.1/32\", expected an IP address", ""},
		{`kumo.make_egress_source{name='a', ha_proxy_server='10.0.0.1'}`, "expected a socket address", ""},
		{`kumo.make_egress_source{name='a', ha_proxy_server='10.0.0.1:5000'}`, "`ha_proxy_server` needs `ha_proxy_source_address`", ""},
		{`kumo.make_egress_source{name='a', ha_proxy_server='proxy_1.example:5000', ha_proxy_source_address='10.0.0.1'}`, "expected a socket address", ""},
		{`kumo.make_egress_source{name='a', ha_proxy_server='10.0.0:5000', ha_proxy_source_address='10.0.0.1'}`, "expected a socket address", ""},
		{`kumo.make_egress_source{name='a', ha_proxy_server='proxy.example:70000', ha_proxy_source_address='10.0.0.1'}`, "expected a socket address", ""},
		{`kumo.make_egress_source{name='a', ha_proxy_server='proxy.example:0', ha_proxy_source_address='10.0.0.1'}`, "needs a port other than 0", ""},
		{`kumo.make_egress_source{name='a', ha_proxy_source_address='10.0.0.1'}`, "`ha_proxy_source_address` needs `ha_proxy_server`", ""},
		{`kumo.make_egress_source{name='a', socks5_proxy_server='10.0.0.1:1080'}`, "`socks5_proxy_server` needs `socks5_proxy_source_address`", ""},
		{`kumo.make_egress_source{name='a', socks5_proxy_source_address='10.0.0.1'}`, "`socks5_proxy_source_address` needs `socks5_proxy_server`", ""},
		{`kumo.make_egress_source{name='a', socks5_proxy_server='10.0.0.1:0', socks5_proxy_source_address='10.0.0.2'}`, "needs a port other than 0", ""},
		{`kumo.make_egress_source{name='a', socks5_proxy_server='10.0.0.1:1080', socks5_proxy_source_address='10.0.0.2/32'}`, "expected an IP address", ""},
		{`kumo.make_egress_source{name='a', ha_proxy_server='10.0.0.1:5000', ha_proxy_source_address='10.0.0.2', socks5_proxy_server='10.0.0.1:1080', socks5_proxy_source_address='10.0.0.2'}`, "cannot both be set", ""},
		{`kumo.make_egress_source{name='a', socks5_proxy_server='10.0.0.1:1080', socks5_proxy_source_address='10.0.0.2', socks5_proxy_username='u'}`, "`socks5_proxy_username` and `socks5_proxy_password` go together", ""},
		{`kumo.make_egress_source{name='a', socks5_proxy_server='10.0.0.1:1080', socks5_proxy_source_address='10.0.0.2', socks5_proxy_password={key_data='p'}}`, "go together", ""},
		{`kumo.make_egress_source{name='a', socks5_proxy_username='u', socks5_proxy_password={key_data='p'}}`, "`socks5_proxy_username` needs `socks5_proxy_server`", ""},
		{`kumo.make_egress_source{name='a', socks5_proxy_server='10.0.0.1:1080', socks5_proxy_source_address='10.0.0.2', socks5_proxy_username=string.rep('u', 256), socks5_proxy_password={key_data='p'}}`, "longer than the 255 bytes", ""},
		{`kumo.make_egress_source{name='a', socks5_proxy_server='10.0.0.1:1080', socks5_proxy_source_address='10.0.0.2', socks5_proxy_username='u', socks5_proxy_password={secret='p'}}`, "untagged enum KeySource", ""},
		{`kumo.make_egress_source{name='a', suspend_when_unplumbed={trigger='Later', duration=1}}`, "unknown variant `Later`", ""},
		{`kumo.make_egress_source{name='a', suspend_when_unplumbed={trigger='Immediate'}}`, "missing field `duration`", ""},
		{`kumo.make_egress_pool{entries={}}`, "missing field `name`", ""},
		{`kumo.make_egress_pool{name='p', entries={{weight=1}}}`, "missing field `name`", ""},
		{`kumo.make_egress_pool{name='p', entries='x'}`, "invalid type: string \"x\", expected a sequence", ""},
	}
	for _, c := range cases {
		_, err := construct(t, c.expr)
		if err == nil {
			t.Errorf("%s: want error", c.expr)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, c.want) {
			t.Errorf("%s:\n got %v\nwant %q", c.expr, msg, c.want)
		}
		if c.not != "" {
			// only the serde message, not the JSON of the input
			first, _, _ := strings.Cut(msg, ", while processing")
			if strings.Contains(first, c.not) {
				t.Errorf("%s: error must not contain %q: %v", c.expr, c.not, first)
			}
		}
		if !strings.Contains(msg, "deserialize error: ") {
			t.Errorf("%s: not a deserialize error: %v", c.expr, msg)
		}
	}
}

// TestConfigReadBack reads every kind of object back from Lua: __index,
// __pairs, __len and tostring, and round-trips a read value into a new
// object.
func TestConfigReadBack(t *testing.T) {
	r := newRuntime(t, `
kumo.on('t', function()
  local q = kumo.make_queue_config{retry_interval='90s', max_age='7 days', egress_pool='p',
    protocol={smtp={mx_list={'a.example', {name='s', addr='127.0.0.1'}}}}}
  assert(q.retry_interval == '1m 30s', q.retry_interval)
  assert(q.max_age == '7days', q.max_age)
  assert(q.max_retry_interval == nil)
  assert(q.egress_pool == 'p')
  assert(q.strategy == 'SingletonTimerWheel')
  assert(q.protocol.smtp.mx_list[1] == 'a.example')
  assert(q.protocol.smtp.mx_list[2].addr == '127.0.0.1')
  assert(q.no_such_key == nil)
  local n = 0
  for k, v in pairs(q) do n = n + 1 end
  assert(n == #q, n .. ' ' .. #q)
  assert(n == 9, tostring(n))
  -- round trip
  local q2 = kumo.make_queue_config{retry_interval=q.retry_interval, max_age=q.max_age}
  assert(q2.retry_interval == '1m 30s')

  local p = kumo.make_egress_path{connection_limit='local:7', prohibited_hosts={'10.0.0.0/8', '::1'}, idle_timeout=2.5}
  assert(p.connection_limit == 'local:7')
  assert(p.prohibited_hosts[1] == '10.0.0.0/8' and p.prohibited_hosts[2] == '::1')
  assert(p.idle_timeout == '2s 500ms', p.idle_timeout)
  assert(p.enable_tls == 'Opportunistic' and p.enable_pipelining == true and p.smtp_port == 25)
  assert(p.ehlo_domain == nil)
  local p2 = kumo.make_egress_path{idle_timeout=p.idle_timeout, connection_limit=p.connection_limit}
  assert(p2.idle_timeout == p.idle_timeout and p2.connection_limit == 'local:7')
  assert(kumo.make_egress_path{connection_limit=3}.connection_limit == 3)
  local keys = {}
  for k in pairs(p) do keys[k] = true end
  assert(keys.connection_limit and keys.skip_hosts and keys.enable_chunking and not keys.ehlo_domain)

  local s = kumo.make_egress_source{name='ip-1', source_address='10.0.0.1'}
  assert(s.name == 'ip-1' and s.source_address == '10.0.0.1' and s.ttl == '1m' and s.remote_port == nil)
  assert(#s == 3, tostring(#s))

  local pool = kumo.make_egress_pool{name='pool', entries={{name='ip-1', weight=2}}}
  assert(pool.entries[1].name == 'ip-1' and pool.entries[1].weight == 2)
  assert(tostring(pool):find('^EgressPool{') ~= nil, tostring(pool))
  local js = kumo.json_encode({q = kumo.make_queue_config{egress_pool='p'}})
  assert(js:find('"egress_pool":"p"') and js:find('"retry_interval":"20m"'), js)
  -- plain tables still iterate
  local c = 0
  for _ in pairs({a=1, b=2}) do c = c + 1 end
  assert(c == 2)
  return true
end)
`)
	if out := run(t, r); len(out) != 1 || out[0] != true {
		t.Fatalf("got %v", out)
	}
}
