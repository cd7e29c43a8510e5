package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
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

// ProxyResolver resolves the host name of a proxy server (KumoMTA's
// ha_proxy_server and socks5_proxy_server may name one); *mx.Resolver
// is one.
type ProxyResolver interface {
	LookupAddr(ctx context.Context, host, strategy string) ([]netip.Addr, error)
}

// connectTransport opens the TCP connection to target for src: directly
// from src's source_address, or through the HAProxy or SOCKS5 proxy that
// src names (make_egress_source's ha_proxy_* and socks5_proxy_* options),
// in which case source_address, when set, binds the local end of the
// connection to the proxy. A proxy named by host name is resolved with
// res at each connection and its addresses tried in turn (those of
// source_address's family only, when it is set), as KumoMTA does.
// connect_timeout bounds each connection and its proxy handshake. Errors
// name the proxy.
func connectTransport(ctx context.Context, res ProxyResolver, target netip.AddrPort, p *config.EgressPath, src *config.EgressSource, hostName string) (*transport, error) {
	nd := net.Dialer{Timeout: p.ConnectTimeout}
	var local netip.Addr
	if src != nil && src.SourceAddress != "" {
		a, err := netip.ParseAddr(strings.Trim(src.SourceAddress, "[]"))
		if err != nil {
			return nil, fmt.Errorf("egress: source %q: invalid source_address %q", src.Name, src.SourceAddress)
		}
		local = a
		nd.LocalAddr = &net.TCPAddr{IP: a.AsSlice(), Zone: a.Zone()}
	}
	var proto, server string
	var via netip.Addr
	proxied := false
	if src != nil {
		proto, server, via, proxied = src.Proxy()
	}
	if !proxied {
		conn, err := nd.DialContext(ctx, "tcp", target.String())
		if err != nil {
			if unplumbed(err) {
				err = &SourceBindError{Source: local, Err: err}
			}
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
	servers, err := proxyAddrs(ctx, res, server, local)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	var errs []error
	for _, sa := range servers {
		t, err := proxyHandshake(ctx, nd, sa, proto, via, target, p, src)
		if err == nil {
			return t, nil
		}
		if len(servers) > 1 {
			err = fmt.Errorf("%s: %w", sa, err)
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("%s: %w", what, errors.Join(errs...))
}

// proxyAddrs is server's addresses: the literal, or what res finds for the
// host name, of local's family when local is set.
func proxyAddrs(ctx context.Context, res ProxyResolver, server string, local netip.Addr) ([]netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(server); err == nil {
		return []netip.AddrPort{ap}, nil
	}
	host, portText, err := net.SplitHostPort(server)
	if err != nil {
		return nil, err
	}
	port, err := strconv.ParseUint(portText, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("bad port in %q", server)
	}
	if res == nil {
		return nil, fmt.Errorf("no resolver for the proxy host name %q", host)
	}
	addrs, err := res.LookupAddr(ctx, host, "")
	if err != nil {
		return nil, fmt.Errorf("resolving %s: %w", host, err)
	}
	var out []netip.AddrPort
	for _, a := range addrs {
		if local.IsValid() && a.Unmap().Is4() != local.Unmap().Is4() {
			continue
		}
		out = append(out, netip.AddrPortFrom(a, uint16(port)))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s has no address usable from source_address %s (%d resolved)", host, local, len(addrs))
	}
	return out, nil
}

// proxyHandshake connects to the proxy at server and asks it, in its
// protocol, for a connection from via to target.
func proxyHandshake(ctx context.Context, nd net.Dialer, server netip.AddrPort, proto string, via netip.Addr, target netip.AddrPort, p *config.EgressPath, src *config.EgressSource) (*transport, error) {
	conn, err := nd.DialContext(ctx, "tcp", server.String())
	if err != nil {
		return nil, &ProxyConnectError{Server: server, Err: err}
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
		return nil, err
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
