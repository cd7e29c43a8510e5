package smtpd

import (
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/message"
	"github.com/kumogo/kumogo/internal/testutil"
)

func TestXClientDisabled(t *testing.T) {
	ts := startServer(t, testConfig(), nullPolicy())
	c := greet(t, ts.addr)
	c.Cmd(t, "XCLIENT ADDR=203.0.113.9", "550 insufficient authorization")
	lines := c.Cmd(t, "EHLO client.example", "250-")
	if strings.Contains(strings.Join(lines, "\n"), "XCLIENT") {
		t.Fatalf("XCLIENT advertised without allow_xclient: %q", lines)
	}
}

// TestXClient: with allow_xclient the session starts over as the named
// client: a new greeting, EHLO required again, relaying and trace
// headers by the new address, the connection's own kept in conn meta.
func TestXClient(t *testing.T) {
	var mu sync.Mutex
	var datas []string
	var metas []map[string]string
	p := &fakePolicy{received: func(m *message.Message) error {
		m.SetMeta("queue", "null")
		mu.Lock()
		defer mu.Unlock()
		datas = append(datas, string(m.Data()))
		mm := map[string]string{}
		for _, k := range []string{"received_from", "received_via", "orig_received_from", "orig_received_via"} {
			mm[k], _ = m.MetaString(k)
		}
		metas = append(metas, mm)
		return nil
	}}
	cfg := testConfig()
	cfg.AllowXClient = true
	cfg.RelayHosts = config.MustCIDRList("203.0.113.0/24")
	ts := startServer(t, cfg, p)
	c := testutil.Dial(t, ts.addr)
	c.Expect(t, "220 mx.test")
	lines := c.Cmd(t, "EHLO proxy.example", "250-mx.test Aloha proxy.example")
	if lines[len(lines)-1] != "250 XCLIENT ADDR PORT DESTADDR DESTPORT" {
		t.Fatalf("EHLO %q", lines)
	}
	// the proxy itself (127.0.0.1) may not relay
	c.Cmd(t, "MAIL FROM:<a@x.example>", "250")
	c.Cmd(t, "RCPT TO:<b@y.example>", "550 5.7.1 relaying not permitted")
	c.Cmd(t, "XCLIENT ADDR=203.0.113.9", "503 5.5.1 XCLIENT is not allowed during a mail transaction")
	c.Cmd(t, "RSET", "250")
	for _, bad := range []string{"XCLIENT", "XCLIENT ADDR", "XCLIENT ADDR=300.1.1.1", "XCLIENT PORT=99999", "XCLIENT NAME=x", "XCLIENT ADDR=1.2.3.4+"} {
		c.Cmd(t, bad, "501 5.5.4 XCLIENT")
	}
	c.Cmd(t, "XCLIENT ADDR=203.0.113.9 PORT=4000 DESTADDR=IPV6:2001:db8::1 DESTPORT=[UNAVAILABLE]", "220 mx.test KumoMTA")
	c.Cmd(t, "MAIL FROM:<a@x.example>", "503 5.5.1 EHLO or HELO must be issued first")
	c.Cmd(t, "EHLO client.example", "250-mx.test Aloha client.example")
	if resp := sendMessage(t, c, "a@x.example", "b@y.example", "Subject: x\r\n\r\nhi\r\n"); !strings.HasPrefix(resp, "250 OK ids=") {
		t.Fatalf("after XCLIENT: %s", resp)
	}
	c.Cmd(t, "QUIT", "221")
	mu.Lock()
	defer mu.Unlock()
	if len(datas) != 1 || !strings.HasPrefix(datas[0], "Received: from client.example (203.0.113.9)\r\n  by mx.test (KumoMTA 2001:db8::1)") {
		t.Fatalf("data %q", datas)
	}
	m := metas[0]
	if m["received_from"] != "203.0.113.9:4000" || !strings.HasPrefix(m["received_via"], "[2001:db8::1]:") ||
		!strings.HasPrefix(m["orig_received_from"], "127.0.0.1:") || m["orig_received_via"] != ts.addr {
		t.Fatalf("meta %v", m)
	}
}

// TestPeerBlocks: a peer block (here: XCLIENT and a banner of its own for
// loopback) applies by the client's address, and XCLIENT re-applies the
// blocks for the address it names: the new greeting is the listener's,
// and a second XCLIENT is refused.
func TestPeerBlocks(t *testing.T) {
	cfg := testConfig()
	loop := cfg
	loop.Banner = "loopback gate"
	loop.AllowXClient = true
	via := cfg
	via.Hostname = "via.test"
	cfg.RelayHosts = config.MustCIDRList("203.0.113.0/24")
	loop.RelayHosts, via.RelayHosts = cfg.RelayHosts, cfg.RelayHosts
	viaLoop := loop
	viaLoop.Hostname = "via.test"
	base := cfg
	cfg.Variants = &config.ListenerVariants{
		Peers:   []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		Vias:    []netip.Prefix{netip.MustParsePrefix("192.0.2.25/32")},
		Configs: [][]*config.ESMTPListener{{&viaLoop, &loop}, {&via, &base}}, // [peer][via], last = no match
	}
	ts := startServer(t, cfg, nullPolicy())
	c := testutil.Dial(t, ts.addr)
	c.Expect(t, "220 mx.test loopback gate")
	c.Cmd(t, "EHLO proxy.example", "250-mx.test Aloha proxy.example")
	c.Cmd(t, "XCLIENT ADDR=203.0.113.9 DESTADDR=192.0.2.25", "220 via.test KumoMTA")
	c.Cmd(t, "EHLO client.example", "250-via.test Aloha client.example")
	c.Cmd(t, "XCLIENT ADDR=127.0.0.2", "550 insufficient authorization")
	if resp := sendMessage(t, c, "a@x.example", "b@y.example", "Subject: x\r\n\r\nhi\r\n"); !strings.HasPrefix(resp, "250 OK ids=") {
		t.Fatalf("relay by the XCLIENT address: %s", resp)
	}
}
