package config

import (
	"net/netip"
)

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
		if ap, err := netip.ParseAddrPort(p.server); err == nil && ap.Port() == 0 {
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
// or "socks5", the proxy server and the source address the proxy is asked
// to use; ok is false for a direct connection. The fields were validated
// by DecodeEgressSource.
func (s *EgressSource) Proxy() (protocol string, server netip.AddrPort, source netip.Addr, ok bool) {
	switch {
	case s.HAProxyServer != "" && s.HAProxySourceAddress != "":
		protocol, server, source = "haproxy", parseAddrPort(s.HAProxyServer), parseAddr(s.HAProxySourceAddress)
	case s.Socks5ProxyServer != "" && s.Socks5ProxySourceAddress != "":
		protocol, server, source = "socks5", parseAddrPort(s.Socks5ProxyServer), parseAddr(s.Socks5ProxySourceAddress)
	default:
		return "", netip.AddrPort{}, netip.Addr{}, false
	}
	return protocol, server, source, server.IsValid() && source.IsValid()
}

func parseAddrPort(s string) netip.AddrPort {
	ap, _ := netip.ParseAddrPort(s)
	return ap
}

func parseAddr(s string) netip.Addr {
	a, _ := netip.ParseAddr(s)
	return a
}
