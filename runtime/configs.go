package runtime

import (
	"fmt"
	"net/netip"
	"sort"
	"strconv"

	"github.com/kumogo/kumogo/internal/config"
)

// esmtpFields are the keys of kumo.start_esmtp_listener, in KumoMTA's
// documentation order.
var esmtpFields = []string{
	"listen", "max_connections", "hostname", "banner", "relay_hosts",
	"tls_certificate", "tls_private_key", "tls_required_client_ca",
	"deferred_spool", "deferred_queue", "trace_headers", "client_timeout",
	"data_processing_timeout", "batch_handling", "max_messages_per_connection",
	"max_recipients_per_message", "max_message_size", "data_buffer_size",
	"invalid_line_endings", "line_length_hard_limit", "allow_xclient",
	"require_proxy_protocol", "meta", "peer", "via",
	// kumogo's own listener limits (README, "kumogo's own listener limits")
	"max_auth_failures", "max_body_memory",
}

// esmtpUnimplemented are options that are parsed but not honoured by the
// listener yet; when given (and not false/empty) their names are recorded
// in ESMTPListener.Unimplemented.
var esmtpUnimplemented = []string{}

// decodeESMTPListener decodes a start_esmtp_listener table strictly on
// top of KumoMTA's defaults, with its peer and via overrides.
func decodeESMTPListener(v any, hostname string) (*config.ESMTPListener, error) {
	l := config.DefaultESMTPListener(hostname)
	o := newObj(v, v, "struct EsmtpListenerParams", esmtpFields...)
	o.listen("listen", &l.Listen)
	o.integer("max_connections", &l.MaxConnections)
	decodeListenerParams(o, &l)
	o.mapValue("peer", &l.Peer)
	o.mapValue("via", &l.Via)
	if o.err != nil {
		return nil, o.err
	}
	for _, name := range esmtpUnimplemented {
		val, ok := o.get(name)
		if !ok || val == false {
			continue
		}
		if m, isMap := val.(map[string]any); isMap && len(m) == 0 {
			continue
		}
		l.Unimplemented = append(l.Unimplemented, name)
	}
	variants, err := decodeListenerVariants(&l)
	if err != nil {
		return nil, err
	}
	l.Variants = variants
	return &l, nil
}

// decodeListenerParams decodes the options a peer or via block may
// override too: all but listen, max_connections, peer and via.
func decodeListenerParams(o *obj, l *config.ESMTPListener) {
	o.str("hostname", &l.Hostname)
	o.str("banner", &l.Banner)
	o.cidrList("relay_hosts", &l.RelayHosts)
	o.keySource("tls_certificate", &l.TLSCertificate)
	o.keySource("tls_private_key", &l.TLSPrivateKey)
	o.keySource("tls_required_client_ca", &l.TLSRequiredClientCA)
	o.boolean("deferred_spool", &l.DeferredSpool)
	o.boolean("deferred_queue", &l.DeferredQueue)
	o.traceHeaders("trace_headers", &l.TraceHeaders)
	o.dur("client_timeout", &l.ClientTimeout)
	o.dur("data_processing_timeout", &l.DataProcessingTimeout)
	o.enum("batch_handling", &l.BatchHandling, "BifurcateAlways", "BatchByDomain")
	o.integer("max_messages_per_connection", &l.MaxMessagesPerConnection)
	o.integer("max_recipients_per_message", &l.MaxRecipientsPerMessage)
	o.integer64("max_message_size", &l.MaxMessageSize)
	o.integer("data_buffer_size", &l.DataBufferSize)
	o.enum("invalid_line_endings", &l.InvalidLineEndings, "Deny", "Allow", "Fix")
	o.integer("line_length_hard_limit", &l.LineLengthHardLimit)
	o.boolean("allow_xclient", &l.AllowXClient)
	o.boolean("require_proxy_protocol", &l.RequireProxyProtocol)
	o.mapValue("meta", &l.Meta)
	o.integer("max_auth_failures", &l.MaxAuthFailures)
	o.integer64("max_body_memory", &l.MaxBodyMemory)
}

// overrideFields are the keys a peer or via block accepts.
var overrideFields = func() []string {
	var out []string
	for _, f := range esmtpFields {
		switch f {
		case "listen", "max_connections", "peer", "via":
		default:
			out = append(out, f)
		}
	}
	return out
}()

// decodeListenerVariants resolves the peer and via tables of l (CIDR or
// address → table of listener options) into every combination, so that a
// bad block fails when the listener starts, not when a client connects.
func decodeListenerVariants(l *config.ESMTPListener) (*config.ListenerVariants, error) {
	if len(l.Peer) == 0 && len(l.Via) == 0 {
		return nil, nil
	}
	peers, peerTables, err := overrideBlocks("peer", l.Peer)
	if err != nil {
		return nil, err
	}
	vias, viaTables, err := overrideBlocks("via", l.Via)
	if err != nil {
		return nil, err
	}
	apply := func(base config.ESMTPListener, what string, table any) (*config.ESMTPListener, error) {
		o := newObj(table, table, "struct EsmtpListenerParams", overrideFields...)
		decodeListenerParams(o, &base)
		if o.err != nil {
			return nil, fmt.Errorf("%s: %w", what, o.err)
		}
		base.Variants = nil
		return &base, nil
	}
	v := &config.ListenerVariants{Peers: peers, Vias: vias, Configs: make([][]*config.ESMTPListener, len(peers)+1)}
	for i := range len(peers) + 1 {
		base := l
		if i < len(peers) {
			if base, err = apply(*l, "peer "+peers[i].String(), peerTables[i]); err != nil {
				return nil, err
			}
		}
		v.Configs[i] = make([]*config.ESMTPListener, len(vias)+1)
		for j := range len(vias) + 1 {
			c := base
			if j < len(vias) {
				if c, err = apply(*base, "via "+vias[j].String(), viaTables[j]); err != nil {
					return nil, err
				}
			}
			v.Configs[i][j] = c
		}
	}
	return v, nil
}

// overrideBlocks parses the keys of a peer or via table, in a stable
// order, with their tables.
func overrideBlocks(what string, m map[string]any) ([]netip.Prefix, []any, error) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var prefixes []netip.Prefix
	var tables []any
	for _, k := range keys {
		p, err := config.ParseCIDRList([]string{k})
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", what, err)
		}
		prefixes = append(prefixes, p[0])
		tables = append(tables, m[k])
	}
	return prefixes, tables, nil
}

// traceHeaders decodes the trace_headers table over the defaults.
func (o *obj) traceHeaders(key string, dst *config.TraceHeaders) {
	v, ok := o.get(key)
	if !ok {
		return
	}
	t := newObj(v, o.input, "struct TraceHeaderOptions", "received_header", "supplemental_header", "header_name", "include_meta_names")
	t.boolean("received_header", &dst.ReceivedHeader)
	t.boolean("supplemental_header", &dst.SupplementalHeader)
	t.str("header_name", &dst.HeaderName)
	t.strList("include_meta_names", &dst.IncludeMetaNames)
	if t.err != nil && o.err == nil {
		o.err = t.err
	}
}

// decodeHTTPListener decodes a start_http_listener table.
func decodeHTTPListener(v any, hostname string) (*config.HTTPListener, error) {
	l := &config.HTTPListener{
		Listen:           "127.0.0.1:8000",
		Hostname:         hostname,
		TrustedHosts:     config.MustCIDRList("127.0.0.1", "::1"),
		RequestBodyLimit: 2 * 1024 * 1024,
	}
	o := newObj(v, v, "struct HttpListenerParams", "listen", "hostname", "use_tls", "tls_certificate", "tls_private_key", "trusted_hosts", "request_body_limit")
	o.listen("listen", &l.Listen)
	o.str("hostname", &l.Hostname)
	o.boolean("use_tls", &l.UseTLS)
	o.keySource("tls_certificate", &l.TLSCertificate)
	o.keySource("tls_private_key", &l.TLSPrivateKey)
	o.cidrList("trusted_hosts", &l.TrustedHosts)
	o.integer64("request_body_limit", &l.RequestBodyLimit)
	if o.err != nil {
		return nil, o.err
	}
	return l, nil
}

// freeSpace reads min_free_space/min_free_inodes: "10%" style strings or
// absolute numbers.
func (o *obj) freeSpace(key string, dst *string) {
	v, ok := o.get(key)
	if !ok {
		return
	}
	switch x := v.(type) {
	case string:
		*dst = x
	case int64:
		if x < 0 {
			o.fail("invalid value: " + describe(v) + ", expected a percentage string or a non-negative number")
			return
		}
		*dst = strconv.FormatInt(x, 10)
	default:
		o.fail("invalid type: " + describe(v) + ", expected a percentage string or a number")
	}
}

// decodeSpool decodes a define_spool table.
func decodeSpool(v any) (*config.Spool, error) {
	s := &config.Spool{Kind: "LocalDisk", MinFreeSpace: "10%", MinFreeInodes: "10%"}
	o := newObj(v, v, "struct DefineSpoolParams", "name", "path", "kind", "flush", "rocks_params", "min_free_space", "min_free_inodes")
	o.str("name", &s.Name)
	o.str("path", &s.Path)
	o.enum("kind", &s.Kind, "LocalDisk", "RocksDB")
	o.boolean("flush", &s.Flush)
	o.mapValue("rocks_params", &s.RocksParams)
	o.freeSpace("min_free_space", &s.MinFreeSpace)
	o.freeSpace("min_free_inodes", &s.MinFreeInodes)
	if o.err == nil && s.Name == "" {
		o.fail("missing field `name`")
	}
	if o.err == nil && s.Path == "" {
		o.fail("missing field `path`")
	}
	if o.err != nil {
		return nil, o.err
	}
	return s, nil
}

// decodeLocalLogs decodes a configure_local_logs table.
func decodeLocalLogs(v any) (*config.LocalLogs, error) {
	l := config.DefaultLocalLogs()
	o := newObj(v, v, "struct LogFileParams", "log_dir", "max_file_size", "max_segment_duration", "compression_level", "back_pressure", "meta", "headers", "per_record", "filter_event", "min_free_space", "min_free_inodes")
	o.str("log_dir", &l.LogDir)
	o.integer64("max_file_size", &l.MaxFileSize)
	o.dur("max_segment_duration", &l.MaxSegmentDuration)
	o.integer("compression_level", &l.CompressionLevel)
	o.integer("back_pressure", &l.BackPressure)
	o.strList("meta", &l.Meta)
	o.strList("headers", &l.Headers)
	o.str("filter_event", &l.FilterEvent)
	o.freeSpace("min_free_space", &l.MinFreeSpace)
	o.freeSpace("min_free_inodes", &l.MinFreeInodes)
	if _, ok := o.get("per_record"); ok {
		var m map[string]any
		o.mapValue("per_record", &m)
		if o.err == nil {
			l.PerRecord = make(map[string]config.PerRecord, len(m))
			for _, k := range sortedKeys(m) {
				rec := config.PerRecord{Enable: true}
				r := newObj(m[k], o.input, "struct LogRecordParams", "suffix", "log_dir", "enable", "template", "segment_header")
				r.str("suffix", &rec.Suffix)
				r.str("log_dir", &rec.LogDir)
				r.boolean("enable", &rec.Enable)
				r.str("template", &rec.Template)
				r.str("segment_header", &rec.SegmentHeader)
				if r.err != nil {
					o.err = r.err
					break
				}
				l.PerRecord[k] = rec
			}
		}
	}
	if o.err == nil && l.LogDir == "" {
		o.fail("missing field `log_dir`")
	}
	if o.err == nil && l.CompressionLevel > 21 {
		o.fail("invalid value: integer `" + strconv.Itoa(l.CompressionLevel) + "`, expected a compression level between 0 and 21")
	}
	if o.err != nil {
		return nil, o.err
	}
	return &l, nil
}

// decodeListenerDomain decodes a make_listener_domain table.
func decodeListenerDomain(v any) (*config.ListenerDomain, error) {
	d := &config.ListenerDomain{LogOOB: "Ignore", LogARF: "Ignore"}
	o := newObj(v, v, "struct ListenerDomain", "relay_to", "relay_from", "log_oob", "log_arf", "ttl")
	o.boolean("relay_to", &d.RelayTo)
	o.cidrList("relay_from", &d.RelayFrom)
	o.logDisposition("log_oob", &d.LogOOB)
	o.logDisposition("log_arf", &d.LogARF)
	// ttl is deprecated: accepted (and checked) but ignored.
	if t, ok := o.get("ttl"); ok {
		if _, err := toDuration(t); err != nil {
			o.fail(err.Error())
		}
	}
	if o.err != nil {
		return nil, o.err
	}
	return d, nil
}

// logDisposition reads log_oob/log_arf: a variant name or a boolean.
func (o *obj) logDisposition(key string, dst *string) {
	v, ok := o.get(key)
	if !ok {
		return
	}
	if b, ok := v.(bool); ok {
		if b {
			*dst = "LogThenRelay"
		} else {
			*dst = "Ignore"
		}
		return
	}
	o.enum(key, dst, "Ignore", "LogThenRelay", "LogThenDrop")
}
