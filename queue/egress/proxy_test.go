package egress

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	socks5 "github.com/armon/go-socks5"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/testutil"
	"github.com/kumogo/kumogo/queue/egress/mx"
)

// deliverOne sends one message on s and checks the peer took it.
func deliverOne(t *testing.T, s *Session) {
	t.Helper()
	res := send(t, s, env(t, "a@example.com", "b@example.net"), "Subject: x\r\n\r\nhello\r\n")
	if len(res.Responses) != 1 || res.Responses[0].Code != 250 {
		t.Fatalf("send through the proxy: %+v", res)
	}
}

func remoteIP(t *testing.T, ps *peerSession) string {
	t.Helper()
	host, _, err := net.SplitHostPort(ps.remote)
	if err != nil {
		t.Fatal(err)
	}
	return host
}

// TestHAProxySource: through a real haproxy (KumoMTA's documented forward
// proxy configuration), the peer sees ha_proxy_source_address as the
// client, and the session reports the proxy for the log records.
func TestHAProxySource(t *testing.T) {
	h := testutil.StartHAProxy(t)
	p := startPeer(t, peerOpts{})
	src := &config.EgressSource{Name: "ha", HAProxyServer: h.Addr, HAProxySourceAddress: "127.0.0.2"}
	s, err := Dial(t.Context(), p.candidate(), testPath(), src, "ha.test")
	if err != nil {
		t.Fatalf("dial through haproxy: %v\n%s", err, h.Output())
	}
	deliverOne(t, s)
	s.Close()
	if got := remoteIP(t, p.session(0)); got != "127.0.0.2" {
		t.Errorf("the peer saw the client at %s, want 127.0.0.2", got)
	}
	if server, proto := s.Proxy(); proto != ProxyHAProxy || server.String() != h.Addr {
		t.Errorf("Proxy() = %v %q", server, proto)
	}
	if s.LocalAddr() != netip.MustParseAddrPort("127.0.0.2:0") {
		t.Errorf("LocalAddr() = %v, want the proxy source with port 0", s.LocalAddr())
	}
	if l := p.session(0).Lines(); len(l) == 0 || l[0] != "EHLO ha.test" {
		t.Errorf("peer lines %q", l)
	}
}

// TestSOCKS5Source: through a SOCKS5 proxy that speaks KumoProxy's
// BIND-then-CONNECT, with RFC 1929 credentials, the peer sees
// socks5_proxy_source_address; a wrong password is refused, naming the
// proxy.
func TestSOCKS5Source(t *testing.T) {
	proxy := testutil.StartSOCKS5(t, map[string]string{"kumo": "s3cret"})
	p := startPeer(t, peerOpts{})
	src := &config.EgressSource{
		Name: "socks", Socks5ProxyServer: proxy.Addr, Socks5ProxySourceAddress: "127.0.0.3",
		Socks5ProxyUsername: "kumo", Socks5ProxyPassword: config.KeySource{Data: []byte("s3cret")},
	}
	s, err := Dial(t.Context(), p.candidate(), testPath(), src, "")
	if err != nil {
		t.Fatal(err)
	}
	deliverOne(t, s)
	s.Close()
	if got := remoteIP(t, p.session(0)); got != "127.0.0.3" {
		t.Errorf("the peer saw the client at %s, want 127.0.0.3", got)
	}
	if b := proxy.Binds(); len(b) != 1 || b[0] != "127.0.0.3" {
		t.Errorf("BIND requests %q", b)
	}
	if server, proto := s.Proxy(); proto != ProxySOCKS5 || server.String() != proxy.Addr {
		t.Errorf("Proxy() = %v %q", server, proto)
	}
	// The proxy's outbound address, port included, from its CONNECT reply.
	if la := s.LocalAddr(); la.Addr() != netip.MustParseAddr("127.0.0.3") || la.Port() == 0 || la.String() != p.session(0).remote {
		t.Errorf("LocalAddr() = %v, peer saw %s", la, p.session(0).remote)
	}

	src.Socks5ProxyPassword = config.KeySource{Data: []byte("wrong")}
	_, err = Dial(t.Context(), p.candidate(), testPath(), src, "")
	if err == nil || !strings.Contains(err.Error(), "via socks5 proxy "+proxy.Addr) || !strings.Contains(err.Error(), "refused the username and password") {
		t.Errorf("wrong password: %v", err)
	}
	if n := len(p.Sessions()); n != 1 {
		t.Errorf("%d sessions reached the peer, want 1", n)
	}
}

// TestSOCKS5WithoutAuth: a proxy without authentication and a source
// without credentials.
func TestSOCKS5WithoutAuth(t *testing.T) {
	proxy := testutil.StartSOCKS5(t, nil)
	p := startPeer(t, peerOpts{})
	src := &config.EgressSource{Name: "socks", Socks5ProxyServer: proxy.Addr, Socks5ProxySourceAddress: "127.0.0.2"}
	s, err := Dial(t.Context(), p.candidate(), testPath(), src, "")
	if err != nil {
		t.Fatal(err)
	}
	deliverOne(t, s)
	s.Close()
	if got := remoteIP(t, p.session(0)); got != "127.0.0.2" {
		t.Errorf("the peer saw the client at %s, want 127.0.0.2", got)
	}
	// A proxy that wants credentials the source does not have.
	authProxy := testutil.StartSOCKS5(t, map[string]string{"u": "p"})
	src.Socks5ProxyServer = authProxy.Addr
	if _, err := Dial(t.Context(), p.candidate(), testPath(), src, ""); err == nil || !strings.Contains(err.Error(), "accepts none of the offered authentication methods") {
		t.Errorf("no credentials for an authenticating proxy: %v", err)
	}
}

// TestSOCKS5ProxyRefusesBind: a plain RFC 1928 server (armon/go-socks5's)
// refuses BIND, so the source address cannot be honoured: a
// ProxyBindError, and nothing reaches the peer from another address.
func TestSOCKS5ProxyRefusesBind(t *testing.T) {
	refusing := bindRefusingSOCKS5(t)
	p := startPeer(t, peerOpts{})
	src := &config.EgressSource{Name: "plain", Socks5ProxyServer: refusing, Socks5ProxySourceAddress: "127.0.0.2"}
	_, err := Dial(t.Context(), p.candidate(), testPath(), src, "")
	var be *ProxyBindError
	if !errors.As(err, &be) || be.Source != netip.MustParseAddr("127.0.0.2") || !strings.Contains(err.Error(), "command not supported") {
		t.Fatalf("want a ProxyBindError, got %v", err)
	}
	if n := len(p.Sessions()); n != 0 {
		t.Errorf("%d sessions reached the peer", n)
	}
}

// TestDeadProxy: a proxy that refuses connections, or accepts and never
// answers, is a TransientFailure (4xx) naming the proxy, within
// connect_timeout.
func TestDeadProxy(t *testing.T) {
	p := startPeer(t, peerOpts{})
	plan := &mx.ConnectionPlan{Site: "s", Candidates: []mx.Candidate{p.candidate()}}
	deadAddr, hangAddr := deadProxy(t), silentProxy(t)

	path := testPath()
	path.ConnectTimeout = 500 * time.Millisecond
	for _, c := range []struct {
		name  string
		src   config.EgressSource
		proto string
		addr  string
		why   string
	}{
		{"socks5 refused", config.EgressSource{Name: "a", Socks5ProxyServer: deadAddr, Socks5ProxySourceAddress: "127.0.0.2"}, "socks5", deadAddr, "connection refused"},
		{"haproxy refused", config.EgressSource{Name: "b", HAProxyServer: deadAddr, HAProxySourceAddress: "127.0.0.2"}, "haproxy", deadAddr, "connection refused"},
		{"socks5 silent", config.EgressSource{Name: "c", Socks5ProxyServer: hangAddr, Socks5ProxySourceAddress: "127.0.0.2"}, "socks5", hangAddr, "i/o timeout"},
	} {
		start := time.Now()
		_, err := Connect(t.Context(), plan, path, &c.src, "")
		took := time.Since(start)
		r := ResponseFor(err)
		if r.Code != 400 || !strings.Contains(r.Content, "via "+c.proto+" proxy "+c.addr) || !strings.Contains(r.Content, c.why) {
			t.Errorf("%s: response %q", c.name, r.String())
		}
		if took > 3*time.Second {
			t.Errorf("%s: took %v with connect_timeout 500ms", c.name, took)
		}
	}
	if n := len(p.Sessions()); n != 0 {
		t.Errorf("%d sessions reached the peer", n)
	}
}

// TestProxySourceFamily: a proxy source address of another family than
// the destination is refused before any connection.
func TestProxySourceFamily(t *testing.T) {
	p := startPeer(t, peerOpts{})
	proxy := testutil.StartSOCKS5(t, nil)
	src := &config.EgressSource{Name: "v6", Socks5ProxyServer: proxy.Addr, Socks5ProxySourceAddress: "::1"}
	_, err := Dial(t.Context(), p.candidate(), testPath(), src, "")
	if err == nil || !strings.Contains(err.Error(), "different address families") {
		t.Errorf("v6 source for a v4 destination: %v", err)
	}
	if b := proxy.Binds(); len(b) != 0 {
		t.Errorf("BIND sent: %q", b)
	}
}

// fakeProxyDNS answers LookupAddr from a map.
type fakeProxyDNS map[string][]netip.Addr

func (f fakeProxyDNS) LookupAddr(_ context.Context, host, _ string) ([]netip.Addr, error) {
	if a, ok := f[host]; ok {
		return a, nil
	}
	return nil, errors.New("NXDOMAIN " + host)
}

// TestProxyHostName: a proxy named by host name is resolved at connection
// time and its addresses tried in turn (127.0.0.9 refuses, 127.0.0.1 is
// the proxy); with source_address set, addresses of the other family are
// skipped. An unknown name is an error naming the proxy.
func TestProxyHostName(t *testing.T) {
	proxy := testutil.StartSOCKS5(t, nil)
	_, port, _ := net.SplitHostPort(proxy.Addr)
	p := startPeer(t, peerOpts{})
	d := Dialer{ProxyResolver: fakeProxyDNS{"proxy.test": {
		netip.MustParseAddr("::1"), netip.MustParseAddr("127.0.0.9"), netip.MustParseAddr("127.0.0.1"),
	}}}
	src := &config.EgressSource{Name: "named", SourceAddress: "127.0.0.1",
		Socks5ProxyServer: "proxy.test:" + port, Socks5ProxySourceAddress: "127.0.0.2"}
	s, err := d.Dial(t.Context(), p.candidate(), testPath(), src, "")
	if err != nil {
		t.Fatal(err)
	}
	deliverOne(t, s)
	s.Close()
	if server, proto := s.Proxy(); proto != ProxySOCKS5 || server.String() != proxy.Addr {
		t.Errorf("Proxy() = %v %q, want %s", server, proto, proxy.Addr)
	}
	if got := remoteIP(t, p.session(0)); got != "127.0.0.2" {
		t.Errorf("the peer saw the client at %s, want 127.0.0.2", got)
	}

	src.Socks5ProxyServer = "nowhere.test:" + port
	_, err = d.Dial(t.Context(), p.candidate(), testPath(), src, "")
	if err == nil || !strings.Contains(err.Error(), "via socks5 proxy nowhere.test:"+port) || !strings.Contains(err.Error(), "NXDOMAIN") {
		t.Errorf("unknown proxy name: %v", err)
	}
	// Only IPv6 addresses for an IPv4 source_address: none usable.
	d.ProxyResolver = fakeProxyDNS{"v6.test": {netip.MustParseAddr("::1")}}
	src.Socks5ProxyServer = "v6.test:" + port
	if _, err := d.Dial(t.Context(), p.candidate(), testPath(), src, ""); err == nil || !strings.Contains(err.Error(), "no address usable from source_address 127.0.0.1") {
		t.Errorf("family filter: %v", err)
	}
	// Without a resolver only literals work.
	if _, err := Dial(t.Context(), p.candidate(), testPath(), src, ""); err == nil || !strings.Contains(err.Error(), "no resolver") {
		t.Errorf("no resolver: %v", err)
	}
}

// deadProxy is an address where nothing listens: a port on an address
// nothing else here binds (everything else is on 127.0.0.1), so that it
// stays free once closed.
func deadProxy(t *testing.T) string {
	t.Helper()
	dead, err := net.Listen("tcp", "127.0.0.7:0")
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	return dead.Addr().String()
}

// silentProxy is the address of a listener that accepts connections and
// never answers.
func silentProxy(t *testing.T) string {
	t.Helper()
	hang, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hang.Close() })
	go func() {
		for {
			c, err := hang.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
	return hang.Addr().String()
}

// bindRefusingSOCKS5 is the address of armon/go-socks5 as released, which
// refuses BIND ("command not supported").
func bindRefusingSOCKS5(t *testing.T) string {
	t.Helper()
	srv, err := socks5.New(&socks5.Config{})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { l.Close() })
	return l.Addr().String()
}
