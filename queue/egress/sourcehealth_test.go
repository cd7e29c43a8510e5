package egress

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/testutil"
	"github.com/kumogo/kumogo/queue/egress/mx"
)

// TestSourceFailureKinds: the connection errors that speak against the
// source name their kind (what suspend_when_proxy_unhealthy and
// suspend_when_unplumbed count), through Connect's joined error: a proxy
// that refuses connections, one that accepts and never answers, a SOCKS5
// proxy that refuses the BIND, and a source address not plumbed here.
// A destination that refuses the proxy's CONNECT, or refuses a direct
// connection, is the destination's failure and names no kind.
func TestSourceFailureKinds(t *testing.T) {
	p := startPeer(t, peerOpts{})
	plan := &mx.ConnectionPlan{Site: "s", Candidates: []mx.Candidate{p.candidate()}}
	deadAddr, hangAddr, refusing := deadProxy(t), silentProxy(t), bindRefusingSOCKS5(t)
	deadPlan := &mx.ConnectionPlan{Site: "d", Candidates: []mx.Candidate{candidateAt(deadAddr)}}
	socks := testutil.StartSOCKS5(t, nil)
	path := testPath()
	path.ConnectTimeout = 500 * time.Millisecond
	for _, c := range []struct {
		name string
		plan *mx.ConnectionPlan
		src  config.EgressSource
		kind string
	}{
		{"socks5 refused", plan, config.EgressSource{Name: "a", Socks5ProxyServer: deadAddr, Socks5ProxySourceAddress: "127.0.0.2"}, FailureProxyUnhealthy},
		{"haproxy refused", plan, config.EgressSource{Name: "b", HAProxyServer: deadAddr, HAProxySourceAddress: "127.0.0.2"}, FailureProxyUnhealthy},
		{"socks5 silent", plan, config.EgressSource{Name: "c", Socks5ProxyServer: hangAddr, Socks5ProxySourceAddress: "127.0.0.2"}, FailureProxyUnhealthy},
		{"socks5 refuses the bind", plan, config.EgressSource{Name: "h", Socks5ProxyServer: refusing, Socks5ProxySourceAddress: "127.0.0.2"}, FailureProxyUnhealthy},
		{"unplumbed", plan, config.EgressSource{Name: "d", SourceAddress: "192.0.2.1"}, FailureUnplumbed},
		{"unplumbed to a proxy", plan, config.EgressSource{Name: "e", SourceAddress: "192.0.2.1", HAProxyServer: deadAddr, HAProxySourceAddress: "127.0.0.2"}, FailureUnplumbed},
		{"destination refuses the proxy", deadPlan, config.EgressSource{Name: "f", Socks5ProxyServer: socks.Addr, Socks5ProxySourceAddress: "127.0.0.2"}, ""},
		{"destination refuses", deadPlan, config.EgressSource{Name: "g"}, ""},
	} {
		_, err := Connect(t.Context(), c.plan, path, &c.src, "")
		if err == nil {
			t.Errorf("%s: connected", c.name)
			continue
		}
		var sf interface{ SourceFailureKind() string }
		kind := ""
		if errors.As(err, &sf) {
			kind = sf.SourceFailureKind()
		}
		if kind != c.kind {
			t.Errorf("%s: kind %q, want %q (%v)", c.name, kind, c.kind, err)
		}
	}
	if n := len(p.Sessions()); n != 0 {
		t.Errorf("%d sessions reached the peer", n)
	}
}

func candidateAt(addr string) mx.Candidate {
	ap := netip.MustParseAddrPort(addr)
	return mx.Candidate{Name: "dead.example.", Addr: ap.Addr(), Port: int(ap.Port())}
}
