package config

import (
	"slices"
	"time"
)

// MXListEntry is one entry of protocol.smtp.mx_list: a host name, a
// "host:port", an "[ip]" literal, or {name=label, addr="ip[:port]"}.
type MXListEntry struct {
	Name string // host name or label
	Addr string // explicit address for {name, addr} entries; "" otherwise
}

// QueueProtocol is the decoded `protocol` of a queue config. Exactly one of
// the kinds is set; the zero value means MX-based SMTP.
type QueueProtocol struct {
	// SMTP
	MXList []MXListEntry
	// TreatMXListAsSecure lets DANE apply to the mx_list hosts (whose
	// addresses must still be DNSSEC-validated), as an MX answer with
	// the AD bit would.
	TreatMXListAsSecure bool
	// Maildir
	MaildirPath string
	DirMode     *uint32
	FileMode    *uint32
	// CustomLua
	CustomLuaConstructor string
	BatchSize            int
	MinBatchSize         int
	MaxBatchLatency      time.Duration
}

// Kind names the protocol: "smtp", "maildir" or "custom_lua".
func (p QueueProtocol) Kind() string {
	switch {
	case p.MaildirPath != "":
		return "maildir"
	case p.CustomLuaConstructor != "":
		return "custom_lua"
	}
	return "smtp"
}

// QueueConfig is the decoded kumo.make_queue_config table (KumoMTA docs: "make_queue_config").
type QueueConfig struct {
	RetryInterval          time.Duration
	MaxRetryInterval       time.Duration // 0 = no cap
	MaxAge                 time.Duration
	EgressPool             string // "" = pool "unspecified"
	MaxMessageRate         string // throttle spec, "" = none
	Protocol               QueueProtocol
	ReapInterval           time.Duration
	RefreshInterval        time.Duration
	RefreshStrategy        string // "Ttl" or "Epoch"
	Strategy               string
	TimerwheelTickInterval time.Duration // 0 = derived
	ProviderName           string
	ShrinkPolicy           []any
	// Unimplemented lists given keys that are not honoured yet
	// ("reap_interval", ...).
	Unimplemented []string
}

// DefaultQueueConfig returns KumoMTA's queue defaults.
func DefaultQueueConfig() QueueConfig {
	return QueueConfig{
		RetryInterval:   20 * time.Minute,
		MaxAge:          7 * 24 * time.Hour,
		ReapInterval:    10 * time.Minute,
		RefreshInterval: time.Minute,
		RefreshStrategy: "Ttl",
		Strategy:        "SingletonTimerWheel",
	}
}

// EgressPath is the decoded kumo.make_egress_path table (KumoMTA docs: "make_egress_path").
type EgressPath struct {
	ConnectionLimit                            int
	ConnectionLimitLocal                       bool
	AdditionalConnectionLimits                 map[string]int
	AdditionalConnectionLimitsLocal            map[string]bool // names whose limit had the local: prefix
	EnableTLS                                  string          // Opportunistic, OpportunisticInsecure, Required, RequiredInsecure, Disabled
	EnableMTASTS                               bool
	EnableDANE                                 bool
	EnablePipelining                           bool
	EnableRSET                                 bool
	EnableChunking                             bool // kumogo: send bodies with BDAT when offered
	TLSPreferOpenSSL                           bool
	TLSCertificate                             KeySource
	TLSPrivateKey                              KeySource
	OpenSSLCipherList                          string
	OpenSSLCipherSuites                        string
	OpenSSLOptions                             string
	RustlsCipherSuites                         []string
	ConnectTimeout                             time.Duration
	BannerTimeout                              time.Duration
	EhloTimeout                                time.Duration
	MailFromTimeout                            time.Duration
	RcptToTimeout                              time.Duration
	DataTimeout                                time.Duration
	DataDotTimeout                             time.Duration
	RsetTimeout                                time.Duration
	IdleTimeout                                time.Duration
	StartTLSTimeout                            time.Duration
	AuthTimeout                                time.Duration
	SystemShutdownTimeout                      time.Duration
	MaxReady                                   int
	ConsecutiveConnectionFailuresBeforeDelay   int
	SMTPPort                                   int
	SMTPAuthPlainUsername                      string
	SMTPAuthPlainPassword                      KeySource
	AllowSMTPAuthPlainWithoutTLS               bool
	AllowSMTPAuthPlainWithoutValidCertificate  bool
	MaxMessageRate                             string
	AdditionalMessageRateThrottles             map[string]string
	SourceSelectionRate                        string
	AdditionalSourceSelectionRates             map[string]string
	MaxConnectionRate                          string
	MaxDeliveriesPerConnection                 int
	MaxRecipientsPerBatch                      int
	ProhibitedHosts                            CIDRList
	SkipHosts                                  CIDRList
	IPLookupStrategy                           string
	EhloDomain                                 string
	AggressiveConnectionOpening                bool
	RefreshInterval                            time.Duration
	RefreshStrategy                            string
	DispatcherWakeupStrategy                   string // Aggressive or Relaxed
	MaintainerWakeupStrategy                   string // Aggressive or Relaxed
	ProviderName                               string
	RememberBrokenTLS                          time.Duration // 0 = not remembered
	OpportunisticTLSReconnectOnFailedHandshake bool
	UseLMTP                                    bool
	ReconnectStrategy                          string // ConnectNextHost, TerminateSession, ReconnectSameHost
	ReadyQPoolName                             string
	TryNextHostOnTransportError                bool
	Ignore8BitChecks                           bool
	LowMemoryReductionPolicy                   string        // ShrinkDataAndMeta, ShrinkData or NoShrink
	NoMemoryReductionPolicy                    string        // ShrinkDataAndMeta, ShrinkData or NoShrink
	DispatcherProgressWatchdogTimeout          time.Duration // 0 = derived from the other timeouts
	// Unimplemented lists given keys that are not honoured yet.
	Unimplemented []string
}

// defaultProhibitedHosts is the default prohibited_hosts (KumoMTA docs:
// "make_egress_path", prohibited_hosts), parsed once: DefaultEgressPath
// runs for every get_egress_path_config (kumo.make_egress_path decodes on
// top of it), that is for every new ready queue, and parsing the list
// each time showed in the profile of ten thousand destinations. It is
// never written: EgressPath users only read their CIDRList, and its
// capacity is its length, so an append copies.
var defaultProhibitedHosts = slices.Clip(MustCIDRList("127.0.0.0/8", "::1", "0.0.0.0", "::"))

// DefaultEgressPath returns KumoMTA's egress path defaults (from code:
// idle_timeout is 5 s). Its ProhibitedHosts is shared with every other
// default path and must not be modified in place.
func DefaultEgressPath() EgressPath {
	return EgressPath{
		ConnectionLimit:                          32,
		EnableTLS:                                "Opportunistic",
		EnableMTASTS:                             true,
		EnablePipelining:                         true,
		EnableRSET:                               true,
		EnableChunking:                           true,
		ConnectTimeout:                           60 * time.Second,
		BannerTimeout:                            60 * time.Second,
		EhloTimeout:                              300 * time.Second,
		MailFromTimeout:                          300 * time.Second,
		RcptToTimeout:                            300 * time.Second,
		DataTimeout:                              300 * time.Second,
		DataDotTimeout:                           300 * time.Second,
		RsetTimeout:                              5 * time.Second,
		IdleTimeout:                              5 * time.Second,
		StartTLSTimeout:                          5 * time.Second,
		AuthTimeout:                              60 * time.Second,
		MaxReady:                                 1024,
		ConsecutiveConnectionFailuresBeforeDelay: 100,
		SMTPPort:                                 25,
		MaxDeliveriesPerConnection:               1024,
		MaxRecipientsPerBatch:                    100,
		ProhibitedHosts:                          defaultProhibitedHosts,
		RefreshInterval:                          60 * time.Second,
		RefreshStrategy:                          "Ttl",
		DispatcherWakeupStrategy:                 "Aggressive",
		MaintainerWakeupStrategy:                 "Aggressive",
		ReconnectStrategy:                        "ConnectNextHost",
		LowMemoryReductionPolicy:                 "ShrinkDataAndMeta",
		NoMemoryReductionPolicy:                  "ShrinkDataAndMeta",
	}
}

// EgressSource is the decoded kumo.make_egress_source table.
type EgressSource struct {
	Name          string
	SourceAddress string
	EhloDomain    string
	RemotePort    int
	TTL           time.Duration
	// Proxy settings (Proxy gives the one in force; checkProxy validates
	// them together).
	HAProxyServer            string // ip:port or host:port
	HAProxySourceAddress     string
	Socks5ProxyServer        string // ip:port or host:port
	Socks5ProxySourceAddress string
	Socks5ProxyUsername      string
	Socks5ProxyPassword      KeySource
	// SuspendWhenUnplumbed and SuspendWhenProxyUnhealthy hold the
	// validated {trigger=..., duration=...} tables (trigger always set;
	// duration as a duration string); queue/sourcehealth.go applies them.
	SuspendWhenUnplumbed      map[string]any
	SuspendWhenProxyUnhealthy map[string]any
	Unimplemented             []string
}

// EgressPoolEntry is one weighted source of a pool.
type EgressPoolEntry struct {
	Name   string
	Weight int
}

// EgressPool is the decoded kumo.make_egress_pool table.
type EgressPool struct {
	Name    string
	Entries []EgressPoolEntry
	TTL     time.Duration
}
