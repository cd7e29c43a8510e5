package config

// DecodeHTTPListener decodes a start_http_listener table.
func DecodeHTTPListener(v any, hostname string) (*HTTPListener, error) {
	l := &HTTPListener{
		Listen:           "127.0.0.1:8000",
		Hostname:         hostname,
		TrustedHosts:     MustCIDRList("127.0.0.1", "::1"),
		RequestBodyLimit: 2 * 1024 * 1024,
	}
	o := NewObject(v, v, "struct HttpListenerParams", "listen", "hostname", "use_tls", "tls_certificate", "tls_private_key", "trusted_hosts", "request_body_limit")
	o.Listen("listen", &l.Listen)
	o.Str("hostname", &l.Hostname)
	o.Bool("use_tls", &l.UseTLS)
	o.KeySource("tls_certificate", &l.TLSCertificate)
	o.KeySource("tls_private_key", &l.TLSPrivateKey)
	o.CIDRList("trusted_hosts", &l.TrustedHosts)
	o.Int64("request_body_limit", &l.RequestBodyLimit)
	if o.err != nil {
		return nil, o.err
	}
	return l, nil
}
