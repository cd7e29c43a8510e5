package config

import (
	"fmt"
	"net/netip"
	"sort"
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

// DecodeESMTPListener decodes a start_esmtp_listener table strictly on
// top of KumoMTA's defaults, with its peer and via overrides.
func DecodeESMTPListener(v any, hostname string) (*ESMTPListener, error) {
	l := DefaultESMTPListener(hostname)
	o := NewObject(v, v, "struct EsmtpListenerParams", esmtpFields...)
	o.Listen("listen", &l.Listen)
	o.Int("max_connections", &l.MaxConnections)
	decodeListenerParams(o, &l)
	o.Map("peer", &l.Peer)
	o.Map("via", &l.Via)
	if o.err != nil {
		return nil, o.err
	}
	for _, name := range esmtpUnimplemented {
		val, ok := o.Get(name)
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

// DecodeListenerParams decodes the options a peer or via block may
// override too: all but listen, max_connections, peer and via.
func decodeListenerParams(o *Object, l *ESMTPListener) {
	o.Str("hostname", &l.Hostname)
	o.Str("banner", &l.Banner)
	o.CIDRList("relay_hosts", &l.RelayHosts)
	o.KeySource("tls_certificate", &l.TLSCertificate)
	o.KeySource("tls_private_key", &l.TLSPrivateKey)
	o.KeySource("tls_required_client_ca", &l.TLSRequiredClientCA)
	o.Bool("deferred_spool", &l.DeferredSpool)
	o.Bool("deferred_queue", &l.DeferredQueue)
	o.traceHeaders("trace_headers", &l.TraceHeaders)
	o.Duration("client_timeout", &l.ClientTimeout)
	o.Duration("data_processing_timeout", &l.DataProcessingTimeout)
	o.Enum("batch_handling", &l.BatchHandling, "BifurcateAlways", "BatchByDomain")
	o.Int("max_messages_per_connection", &l.MaxMessagesPerConnection)
	o.Int("max_recipients_per_message", &l.MaxRecipientsPerMessage)
	o.Int64("max_message_size", &l.MaxMessageSize)
	o.Int("data_buffer_size", &l.DataBufferSize)
	o.Enum("invalid_line_endings", &l.InvalidLineEndings, "Deny", "Allow", "Fix")
	o.Int("line_length_hard_limit", &l.LineLengthHardLimit)
	o.Bool("allow_xclient", &l.AllowXClient)
	o.Bool("require_proxy_protocol", &l.RequireProxyProtocol)
	o.Map("meta", &l.Meta)
	o.Int("max_auth_failures", &l.MaxAuthFailures)
	o.Int64("max_body_memory", &l.MaxBodyMemory)
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
func decodeListenerVariants(l *ESMTPListener) (*ListenerVariants, error) {
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
	apply := func(base ESMTPListener, what string, table any) (*ESMTPListener, error) {
		o := NewObject(table, table, "struct EsmtpListenerParams", overrideFields...)
		decodeListenerParams(o, &base)
		if o.err != nil {
			return nil, fmt.Errorf("%s: %w", what, o.err)
		}
		base.Variants = nil
		return &base, nil
	}
	v := &ListenerVariants{Peers: peers, Vias: vias, Configs: make([][]*ESMTPListener, len(peers)+1)}
	for i := range len(peers) + 1 {
		base := l
		if i < len(peers) {
			if base, err = apply(*l, "peer "+peers[i].String(), peerTables[i]); err != nil {
				return nil, err
			}
		}
		v.Configs[i] = make([]*ESMTPListener, len(vias)+1)
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
		p, err := ParseCIDRList([]string{k})
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", what, err)
		}
		prefixes = append(prefixes, p[0])
		tables = append(tables, m[k])
	}
	return prefixes, tables, nil
}

// traceHeaders decodes the trace_headers table over the defaults.
func (o *Object) traceHeaders(key string, dst *TraceHeaders) {
	v, ok := o.Get(key)
	if !ok {
		return
	}
	t := NewObject(v, o.input, "struct TraceHeaderOptions", "received_header", "supplemental_header", "header_name", "include_meta_names")
	t.Bool("received_header", &dst.ReceivedHeader)
	t.Bool("supplemental_header", &dst.SupplementalHeader)
	t.Str("header_name", &dst.HeaderName)
	t.StrList("include_meta_names", &dst.IncludeMetaNames)
	if t.err != nil && o.err == nil {
		o.err = t.err
	}
}
