package config

import (
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// proxyServer reads a proxy server address: an IP literal and port
// ("10.0.0.1:5000", "[::1]:5000"), or a DNS host name and port
// ("proxy.example.com:5000") that is resolved at connection time, as the
// ha_proxy_server and socks5_proxy_server pages of KumoMTA allow.
func (o *Object) proxyServer(key string, dst *string) {
	o.ParsedString(key, dst, "expected a socket address like \"10.0.0.1:5000\" or \"proxy.example.com:5000\"", func(s string) (string, error) {
		if ap, err := netip.ParseAddrPort(s); err == nil {
			return ap.String(), nil
		}
		host, port, err := net.SplitHostPort(s)
		if err != nil {
			return "", err
		}
		if _, err := strconv.ParseUint(port, 10, 16); err != nil {
			return "", err
		}
		if !isHostName(host) {
			return "", strconv.ErrSyntax
		}
		return net.JoinHostPort(strings.ToLower(strings.TrimSuffix(host, ".")), port), nil
	})
}

// isHostName reports whether s is a DNS host name: dot-separated labels of
// letters, digits and hyphens, not starting or ending with a hyphen, and
// not all digits (an IPv4 literal with a typo is not a name).
func isHostName(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	digitsOnly := true
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			switch {
			case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '-':
				digitsOnly = false
			case c >= '0' && c <= '9':
			default:
				return false
			}
		}
	}
	return !digitsOnly
}

// checkProxy validates the proxy options of a make_egress_source table
// together. KumoMTA (make_egress_source's ha_proxy_server and
// socks5_proxy_server pages) uses a proxy only when both its server and its
// source address are given, HAProxy first, and SOCKS5 credentials only when
// both the username and the password are given; everything else is silently
// a direct connection from the wrong address. kumogo refuses those
// half-configured sources instead, since sending from an unintended IP is
// what an egress source exists to prevent.
func checkProxy(s *EgressSource) string {
	pairs := []struct{ server, source, serverKey, sourceKey string }{
		{s.HAProxyServer, s.HAProxySourceAddress, "ha_proxy_server", "ha_proxy_source_address"},
		{s.Socks5ProxyServer, s.Socks5ProxySourceAddress, "socks5_proxy_server", "socks5_proxy_source_address"},
	}
	set := 0
	for _, p := range pairs {
		switch {
		case p.server == "" && p.source == "":
			continue
		case p.server == "":
			return "`" + p.sourceKey + "` needs `" + p.serverKey + "`: the proxy is used only when both are set"
		case p.source == "":
			return "`" + p.serverKey + "` needs `" + p.sourceKey + "`: the proxy is used only when both are set"
		}
		if _, port, _ := net.SplitHostPort(p.server); port == "0" {
			return "invalid value: string \"" + p.server + "\", `" + p.serverKey + "` needs a port other than 0"
		}
		set++
	}
	if set > 1 {
		return "`ha_proxy_server` and `socks5_proxy_server` cannot both be set on one source"
	}
	hasUser, hasPass := s.Socks5ProxyUsername != "", !s.Socks5ProxyPassword.IsZero()
	if hasUser != hasPass {
		return "`socks5_proxy_username` and `socks5_proxy_password` go together"
	}
	if hasUser && s.Socks5ProxyServer == "" {
		return "`socks5_proxy_username` needs `socks5_proxy_server`"
	}
	if len(s.Socks5ProxyUsername) > 255 {
		return "`socks5_proxy_username` is longer than the 255 bytes SOCKS5 allows"
	}
	return ""
}

// Proxy returns the proxy a source connects through: protocol "haproxy"
// or "socks5", the proxy server ("ip:port", or "host:port" to resolve at
// connection time) and the source address the proxy is asked to use; ok
// is false for a direct connection. The fields were validated by
// DecodeEgressSource.
func (s *EgressSource) Proxy() (protocol, server string, source netip.Addr, ok bool) {
	switch {
	case s.HAProxyServer != "" && s.HAProxySourceAddress != "":
		protocol, server, source = "haproxy", s.HAProxyServer, parseAddr(s.HAProxySourceAddress)
	case s.Socks5ProxyServer != "" && s.Socks5ProxySourceAddress != "":
		protocol, server, source = "socks5", s.Socks5ProxyServer, parseAddr(s.Socks5ProxySourceAddress)
	default:
		return "", "", netip.Addr{}, false
	}
	return protocol, server, source, source.IsValid()
}

func parseAddr(s string) netip.Addr {
	a, _ := netip.ParseAddr(s)
	return a
}
