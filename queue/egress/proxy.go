package egress

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	proxyproto "github.com/pires/go-proxyproto"

	"github.com/kumogo/kumogo/internal/config"
)

// Proxy protocols as log records name them (source_address.protocol in
// KumoMTA's log record page).
const (
	ProxyHAProxy = "haproxy"
	ProxySOCKS5  = "socks5"
)

// transport is the TCP connection a session runs on, and what the log
// records say about its source.
type transport struct {
	conn net.Conn
	// local is the source address for records: the connection's own
	// local address, the SOCKS5 proxy's outbound address, or the
	// HAProxy source address with port 0 (the PROXY protocol reports no
	// port back, as KumoMTA's log record page says).
	local netip.AddrPort
	// proxyServer and proxyProtocol are set for a proxied connection.
	proxyServer   netip.AddrPort
	proxyProtocol string
}

// connectTransport opens the TCP connection to target for src: directly
// from src's source_address, or through the HAProxy or SOCKS5 proxy that
// src names (make_egress_source's ha_proxy_* and socks5_proxy_* options),
// in which case source_address, when set, binds the local end of the
// connection to the proxy. connect_timeout bounds the connection and the
// proxy handshake together. Errors name the proxy.
func connectTransport(ctx context.Context, target netip.AddrPort, p *config.EgressPath, src *config.EgressSource, hostName string) (*transport, error) {
	nd := net.Dialer{Timeout: p.ConnectTimeout}
	if src != nil && src.SourceAddress != "" {
		a, err := netip.ParseAddr(strings.Trim(src.SourceAddress, "[]"))
		if err != nil {
			return nil, fmt.Errorf("egress: source %q: invalid source_address %q", src.Name, src.SourceAddress)
		}
		nd.LocalAddr = &net.TCPAddr{IP: a.AsSlice(), Zone: a.Zone()}
	}
	var proto string
	var server netip.AddrPort
	var via netip.Addr
	proxied := false
	if src != nil {
		proto, server, via, proxied = src.Proxy()
	}
	if !proxied {
		conn, err := nd.DialContext(ctx, "tcp", target.String())
		if err != nil {
			return nil, fmt.Errorf("egress: connect to %s %s: %w", hostName, target, err)
		}
		t := &transport{conn: conn}
		if la, ok := conn.LocalAddr().(*net.TCPAddr); ok {
			t.local = la.AddrPort()
		}
		return t, nil
	}

	what := fmt.Sprintf("egress: connect to %s %s via %s proxy %s", hostName, target, proto, server)
	// The proxy binds the source address for a destination of the same
	// family only (KumoMTA skips such a candidate the same way).
	if via.Unmap().Is4() != target.Addr().Unmap().Is4() {
		return nil, fmt.Errorf("%s: source %q: proxy source address %s and destination are of different address families", what, src.Name, via)
	}
	conn, err := nd.DialContext(ctx, "tcp", server.String())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	deadline := time.Now().Add(p.ConnectTimeout)
	if p.ConnectTimeout <= 0 {
		deadline = time.Time{}
	}
	if d, ok := ctx.Deadline(); ok && (deadline.IsZero() || d.Before(deadline)) {
		deadline = d
	}
	conn.SetDeadline(deadline)
	t := &transport{conn: conn, proxyServer: server, proxyProtocol: proto}
	switch proto {
	case ProxyHAProxy:
		t.local = netip.AddrPortFrom(via, 0)
		err = writeProxyV2(conn, t.local, target)
	case ProxySOCKS5:
		t.local, err = socks5Connect(conn, via, target, src)
	}
	if err == nil {
		err = conn.SetDeadline(time.Time{})
	}
	if err != nil {
		conn.Close()
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return t, nil
}

// writeProxyV2 sends a PROXY protocol v2 header asking the proxy to
// connect from src to dst. HAProxy honours the source with
// `usesrc clientip` (KumoMTA's "Routing Messages Via Proxy Servers" page
// shows such a configuration); the protocol has no answer, so a proxy that
// cannot bind the address shows up later, as a missing banner.
func writeProxyV2(conn net.Conn, src, dst netip.AddrPort) error {
	src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
	dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	h := proxyproto.HeaderProxyFromAddrs(2, net.TCPAddrFromAddrPort(src), net.TCPAddrFromAddrPort(dst))
	if _, err := h.WriteTo(conn); err != nil {
		return fmt.Errorf("sending the PROXY v2 header: %w", err)
	}
	return nil
}
