// Package config holds the typed configuration objects that a policy builds
// with kumo.* constructors (listener, spool, log, listener-domain, queue and
// egress parameters) and their strict decoders, one file per constructor
// named after it (make_queue_config.go decodes kumo.make_queue_config).
// runtime converts a Lua table into plain Go values (maps, slices, strings,
// bools, int64, float64) and hands them to a Decode function; the daemon,
// the listener and the queue consume the result. Decoding is strict, with
// serde's wording ("deserialize error: unknown field `x`, ..."), and
// defaults are KumoMTA's.
package config

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"
)

// KeySource names key or certificate material: a file path, inline data or
// a HashiCorp Vault location (the latter is parsed but not served yet).
type KeySource struct {
	Path  string
	Data  []byte
	Vault map[string]string
}

// IsZero reports whether no key source was given.
func (k KeySource) IsZero() bool { return k.Path == "" && k.Data == nil && k.Vault == nil }

// Read returns the material: the inline data, or the file's contents.
// Vault sources are not served yet.
func (k KeySource) Read() ([]byte, error) {
	switch {
	case k.Data != nil:
		return k.Data, nil
	case k.Path != "":
		return os.ReadFile(k.Path)
	case k.Vault != nil:
		return nil, errors.New("vault key sources are not supported yet")
	}
	return nil, errors.New("key source is empty")
}

// TraceHeaders controls the Received and supplemental trace headers.
type TraceHeaders struct {
	ReceivedHeader     bool
	SupplementalHeader bool
	HeaderName         string
	IncludeMetaNames   []string
}

// DefaultTraceHeaders returns KumoMTA's defaults for SMTP reception.
func DefaultTraceHeaders() TraceHeaders {
	return TraceHeaders{ReceivedHeader: true, SupplementalHeader: true, HeaderName: "X-KumoRef"}
}

// ESMTPListener is the decoded kumo.start_esmtp_listener parameter table.
type ESMTPListener struct {
	Listen                   string
	Hostname                 string
	Banner                   string
	RelayHosts               CIDRList
	MaxConnections           int
	MaxMessageSize           int64
	MaxRecipientsPerMessage  int
	MaxMessagesPerConnection int
	ClientTimeout            time.Duration
	DataProcessingTimeout    time.Duration
	DataBufferSize           int
	LineLengthHardLimit      int
	// InvalidLineEndings is "Deny", "Allow" or "Fix".
	InvalidLineEndings string
	// BatchHandling is "BifurcateAlways" or "BatchByDomain".
	BatchHandling        string
	Meta                 map[string]any
	TLSCertificate       KeySource
	TLSPrivateKey        KeySource
	TLSRequiredClientCA  KeySource
	DeferredSpool        bool
	DeferredQueue        bool
	TraceHeaders         TraceHeaders
	AllowXClient         bool
	RequireProxyProtocol bool
	// MaxAuthFailures is a kumogo extension (listener option
	// max_auth_failures; KumoMTA has no such option): after this many
	// failed AUTH attempts in one session the client gets a 421 and the
	// connection is closed. 0 (unset) means DefaultMaxAuthFailures, a
	// negative value no limit.
	MaxAuthFailures int
	// MaxBodyMemory is a kumogo extension (listener option
	// max_body_memory, bytes): the most memory that message bodies being
	// received may hold across the listener. 0 (unset) means smtpd's
	// default (1 GiB); it is never less than twice max_message_size.
	MaxBodyMemory int64
	// Peer and Via hold the raw per-CIDR override tables; Variants is
	// what they resolve to (nil without any).
	Peer     map[string]any
	Via      map[string]any
	Variants *ListenerVariants
	// Unimplemented lists option names that were given but are not honoured
	// yet; the daemon logs them once.
	Unimplemented []string
}

// ListenerVariants are the listener configurations that `peer` and `via`
// make: per-CIDR overrides chosen by the client's address (peer) and by
// the local address it reached (via, applied after peer). Each entry of
// Configs is a whole configuration, decoded when the listener starts.
type ListenerVariants struct {
	Peers, Vias []netip.Prefix
	// Configs[i][j] applies Peers[i] (i == len(Peers): no peer entry) and
	// then Vias[j] (j == len(Vias): no via entry) to the listener.
	Configs [][]*ESMTPListener
}

// For returns the configuration for a session from peer to local: the
// most specific matching peer entry, then the most specific via entry.
func (v *ListenerVariants) For(peer, local netip.Addr) *ESMTPListener {
	return v.Configs[bestPrefix(v.Peers, peer)][bestPrefix(v.Vias, local)]
}

// bestPrefix returns the index of the longest prefix containing ip, or
// len(prefixes) when none does.
func bestPrefix(prefixes []netip.Prefix, ip netip.Addr) int {
	ip = ip.Unmap()
	best, bits := len(prefixes), -1
	for i, p := range prefixes {
		if p.Contains(ip) && p.Bits() > bits {
			best, bits = i, p.Bits()
		}
	}
	return best
}

// DefaultMaxAuthFailures is the number of failed AUTH attempts that ends
// a session when max_auth_failures is not set.
const DefaultMaxAuthFailures = 3

// DefaultESMTPListener returns a listener config with KumoMTA's defaults.
// hostname is the machine host name.
func DefaultESMTPListener(hostname string) ESMTPListener {
	return ESMTPListener{
		Listen:                   "127.0.0.1:2025",
		Hostname:                 hostname,
		Banner:                   "KumoMTA",
		RelayHosts:               MustCIDRList("127.0.0.1", "::1"),
		MaxConnections:           32768,
		MaxMessageSize:           20 * 1024 * 1024,
		MaxRecipientsPerMessage:  1024,
		MaxMessagesPerConnection: 10000,
		ClientTimeout:            60 * time.Second,
		DataProcessingTimeout:    300 * time.Second,
		DataBufferSize:           128 * 1024,
		LineLengthHardLimit:      998,
		InvalidLineEndings:       "Deny",
		BatchHandling:            "BifurcateAlways",
		TraceHeaders:             DefaultTraceHeaders(),
	}
}

// HTTPListener is the decoded kumo.start_http_listener parameter table.
type HTTPListener struct {
	Listen           string
	Hostname         string
	UseTLS           bool
	TLSCertificate   KeySource
	TLSPrivateKey    KeySource
	TrustedHosts     CIDRList
	RequestBodyLimit int64
}

// Spool is the decoded kumo.define_spool parameter table.
type Spool struct {
	Name          string
	Path          string
	Kind          string // "LocalDisk" or "RocksDB"
	Flush         bool
	MinFreeSpace  string
	MinFreeInodes string
	RocksParams   map[string]any
}

// PerRecord is one entry of configure_local_logs.per_record.
type PerRecord struct {
	Suffix        string
	LogDir        string
	Enable        bool
	Template      string
	SegmentHeader string
}

// LocalLogs is the decoded kumo.configure_local_logs parameter table.
type LocalLogs struct {
	LogDir             string
	MaxFileSize        int64
	MaxSegmentDuration time.Duration // 0 = unlimited
	CompressionLevel   int
	BackPressure       int
	Meta               []string
	Headers            []string
	PerRecord          map[string]PerRecord
	FilterEvent        string
	MinFreeSpace       string
	MinFreeInodes      string
}

// DefaultLocalLogs returns KumoMTA's defaults (LogDir is required and empty).
func DefaultLocalLogs() LocalLogs {
	return LocalLogs{MaxFileSize: 1_000_000_000, BackPressure: 128000, MinFreeSpace: "10%", MinFreeInodes: "10%"}
}

// ListenerDomain is the decoded kumo.make_listener_domain table.
type ListenerDomain struct {
	RelayTo   bool
	RelayFrom CIDRList
	// LogOOB and LogARF are "Ignore", "LogThenRelay" or "LogThenDrop".
	LogOOB string
	LogARF string
}

// CIDRList is a list of networks; an IP literal is a single-address prefix.
type CIDRList []netip.Prefix

// Contains reports whether ip is inside any prefix of the list.
func (l CIDRList) Contains(ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, p := range l {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// ParseCIDRList parses IP literals and CIDRs strictly: host bits must be
// zero ("192.168.1.0/24" is accepted, "192.168.1.1/24" is not).
func ParseCIDRList(items []string) (CIDRList, error) {
	out := make(CIDRList, 0, len(items))
	for _, s := range items {
		s = strings.TrimSpace(s)
		if strings.Contains(s, "/") {
			p, err := netip.ParsePrefix(s)
			if err != nil {
				return nil, fmt.Errorf("invalid CIDR %q: %v", s, err)
			}
			if p.Masked() != p {
				return nil, fmt.Errorf("invalid CIDR %q: host bits are set", s)
			}
			out = append(out, p)
			continue
		}
		a, err := netip.ParseAddr(strings.Trim(s, "[]"))
		if err != nil {
			return nil, fmt.Errorf("invalid IP address %q: %v", s, err)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}

// MustCIDRList is ParseCIDRList for constants; it panics on error.
func MustCIDRList(items ...string) CIDRList {
	l, err := ParseCIDRList(items)
	if err != nil {
		panic(err)
	}
	return l
}

// AcctLog is the decoded kumo.aaa.configure_acct_log parameter table: the
// accounting log of authentication and authorization events.
type AcctLog struct {
	Logs LocalLogs // log_dir, sizes, compression, back_pressure, free-space floors

	LogAuthzAllow bool
	LogAuthzDeny  bool
	LogAuthnOK    bool
	LogAuthnFail  bool
}

// DefaultAcctLog returns KumoMTA's defaults: every kind of event logged.
func DefaultAcctLog() AcctLog {
	return AcctLog{Logs: DefaultLocalLogs(), LogAuthzAllow: true, LogAuthzDeny: true, LogAuthnOK: true, LogAuthnFail: true}
}
