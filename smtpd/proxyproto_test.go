package smtpd

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/logrecord"
	"github.com/kumogo/kumogo/internal/message"
	"github.com/kumogo/kumogo/internal/testutil"
)

// proxyV2 builds a v2 header: PROXY (or LOCAL) over TCP for src and dst,
// with tlv appended to the address block.
func proxyV2(local bool, src, dst netip.AddrPort, tlv []byte) []byte {
	var b bytes.Buffer
	b.Write(proxyV2Sig)
	if local {
		b.WriteByte(0x20)
	} else {
		b.WriteByte(0x21)
	}
	addrs := append(append(src.Addr().AsSlice(), dst.Addr().AsSlice()...), 0, 0, 0, 0)
	binary.BigEndian.PutUint16(addrs[len(addrs)-4:], src.Port())
	binary.BigEndian.PutUint16(addrs[len(addrs)-2:], dst.Port())
	if src.Addr().Is4() {
		b.WriteByte(0x11)
	} else {
		b.WriteByte(0x21)
	}
	body := append(addrs, tlv...)
	var n [2]byte
	binary.BigEndian.PutUint16(n[:], uint16(len(body)))
	b.Write(n[:])
	b.Write(body)
	return b.Bytes()
}

func TestReadProxyHeader(t *testing.T) {
	src4, dst4 := netip.MustParseAddrPort("203.0.113.7:40000"), netip.MustParseAddrPort("198.51.100.1:25")
	src6, dst6 := netip.MustParseAddrPort("[2001:db8::7]:40001"), netip.MustParseAddrPort("[2001:db8::1]:2525")
	for _, tc := range []struct {
		name, in string
		want     proxyHeader
		err      bool
	}{
		{"v1 tcp4", "PROXY TCP4 203.0.113.7 198.51.100.1 40000 25\r\n", proxyHeader{src4, dst4, true}, false},
		{"v1 tcp6", "PROXY TCP6 2001:db8::7 2001:db8::1 40001 2525\r\n", proxyHeader{src6, dst6, true}, false},
		{"v1 unknown", "PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", proxyHeader{}, false},
		{"v1 family mismatch", "PROXY TCP4 2001:db8::7 198.51.100.1 40000 25\r\n", proxyHeader{}, true},
		{"v1 bad port", "PROXY TCP4 203.0.113.7 198.51.100.1 70000 25\r\n", proxyHeader{}, true},
		{"v1 bare LF", "PROXY TCP4 203.0.113.7 198.51.100.1 40000 25\n", proxyHeader{}, true},
		{"v1 too long", "PROXY TCP4 " + strings.Repeat("1", 120) + "\r\n", proxyHeader{}, true},
		{"v1 missing fields", "PROXY TCP4 203.0.113.7\r\n", proxyHeader{}, true},
		{"v2 tcp4 with TLV", string(proxyV2(false, src4, dst4, []byte{0x04, 0, 1, 'x'})), proxyHeader{src4, dst4, true}, false},
		{"v2 tcp6", string(proxyV2(false, src6, dst6, nil)), proxyHeader{src6, dst6, true}, false},
		{"v2 local", string(proxyV2(true, src4, dst4, nil)), proxyHeader{}, false},
		{"v2 short", string(proxyV2(false, src4, dst4, nil))[:20], proxyHeader{}, true},
		{"smtp instead", "EHLO client.example\r\n", proxyHeader{}, true},
		{"empty", "", proxyHeader{}, true},
	} {
		in := tc.in
		if !tc.err {
			in += "EHLO after\r\n" // must be left unread
		}
		r := bufio.NewReader(strings.NewReader(in))
		got, err := readProxyHeader(r)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("%s: %+v, %v", tc.name, got, err)
			continue
		}
		if err == nil {
			// the header is consumed, and only the header
			if rest, _ := io.ReadAll(r); string(rest) != "EHLO after\r\n" {
				t.Errorf("%s: left %q after the header", tc.name, rest)
			}
		}
	}
}

// TestRequireProxyProtocol: with require_proxy_protocol the addresses of
// the header are the session's: they decide relaying and appear in conn
// meta, the Received header and the Reception record, while the
// connection's own are kept as orig_received_from/orig_received_via. A
// connection without a header is closed without a banner.
func TestRequireProxyProtocol(t *testing.T) {
	var mu sync.Mutex
	var metas []map[string]any
	var datas []string
	p := &fakePolicy{
		connAccepted: func(cm *message.ConnMeta) error {
			mu.Lock()
			defer mu.Unlock()
			m := map[string]any{}
			for _, k := range []string{"received_from", "received_via", "orig_received_from", "orig_received_via"} {
				if v, ok := cm.Get(k); ok {
					m[k] = v
				}
			}
			metas = append(metas, m)
			return nil
		},
		received: func(m *message.Message) error {
			m.SetMeta("queue", "null")
			mu.Lock()
			datas = append(datas, string(m.Data()))
			mu.Unlock()
			return nil
		},
	}
	cfg := testConfig()
	cfg.RequireProxyProtocol = true
	cfg.RelayHosts = config.MustCIDRList("203.0.113.0/24", "2001:db8::/64")
	ts := startServer(t, cfg, p)

	send := func(header []byte, helo string) *testutil.SMTPConn {
		c := testutil.Dial(t, ts.addr)
		c.SendRaw(string(header))
		c.Expect(t, "220 mx.test")
		c.Cmd(t, "EHLO "+helo, "250-mx.test Aloha "+helo)
		return c
	}
	// v1: a relayed peer (the real one, 127.0.0.1, is not in relay_hosts)
	c := send([]byte("PROXY TCP4 203.0.113.7 198.51.100.1 40000 25\r\n"), "v1.example")
	if resp := sendMessage(t, c, "a@x.example", "b@y.example", "Subject: v1\r\n\r\nhi\r\n"); !strings.HasPrefix(resp, "250 OK ids=") {
		t.Fatalf("v1: %s", resp)
	}
	c.Close()
	// v2 over IPv6 addresses
	c = send(proxyV2(false, netip.MustParseAddrPort("[2001:db8::7]:40001"), netip.MustParseAddrPort("[2001:db8::1]:2525"), nil), "v2.example")
	if resp := sendMessage(t, c, "a@x.example", "b@y.example", "Subject: v2\r\n\r\nhi\r\n"); !strings.HasPrefix(resp, "250 OK ids=") {
		t.Fatalf("v2: %s", resp)
	}
	c.Close()
	// a proxied peer outside relay_hosts is refused by its own address
	c = send([]byte("PROXY TCP4 192.0.2.9 198.51.100.1 1234 25\r\n"), "out.example")
	c.Cmd(t, "MAIL FROM:<a@x.example>", "250")
	c.Cmd(t, "RCPT TO:<b@y.example>", "550 5.7.1 relaying not permitted for 192.0.2.9:1234")
	c.Close()
	// v2 LOCAL (a health check): the connection's own addresses
	c = send(proxyV2(true, netip.MustParseAddrPort("192.0.2.1:1"), netip.MustParseAddrPort("192.0.2.2:2"), nil), "local.example")
	c.Cmd(t, "QUIT", "221")
	c.Close()

	// no header: closed without a banner
	raw, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	raw.Write([]byte("EHLO no-header.example\r\n"))
	raw.SetReadDeadline(time.Now().Add(5 * time.Second))
	if got, _ := io.ReadAll(raw); len(got) != 0 {
		t.Errorf("a connection without a PROXY header got %q", got)
	}
	raw.Close()

	mu.Lock()
	defer mu.Unlock()
	if len(metas) != 4 {
		t.Fatalf("%d connections accepted, want 4 (metas %v)", len(metas), metas)
	}
	if m := metas[0]; m["received_from"] != "203.0.113.7:40000" || m["received_via"] != "198.51.100.1:25" ||
		!strings.HasPrefix(m["orig_received_from"].(string), "127.0.0.1:") || m["orig_received_via"] != ts.addr {
		t.Errorf("v1 conn meta %v", m)
	}
	if m := metas[1]; m["received_from"] != "[2001:db8::7]:40001" || m["received_via"] != "[2001:db8::1]:2525" {
		t.Errorf("v2 conn meta %v", m)
	}
	if m := metas[3]; !strings.HasPrefix(m["received_from"].(string), "127.0.0.1:") || m["orig_received_from"] != nil {
		t.Errorf("LOCAL conn meta %v", m)
	}
	if len(datas) != 2 || !strings.HasPrefix(datas[0], "Received: from v1.example (203.0.113.7)\r\n  by mx.test (KumoMTA 198.51.100.1)") ||
		!strings.HasPrefix(datas[1], "Received: from v2.example (2001:db8::7)") {
		t.Errorf("Received headers %q", datas)
	}
	recs := ts.recs.ByType(logrecord.Reception)
	if len(recs) != 2 || recs[0].PeerAddress == nil || recs[0].PeerAddress.Addr != "203.0.113.7" {
		t.Errorf("Reception records %+v", recs)
	}
}

// FuzzProxyHeader: any input either fails or gives valid addresses, and
// never reads more than the header.
func FuzzProxyHeader(f *testing.F) {
	f.Add([]byte("PROXY TCP4 203.0.113.7 198.51.100.1 40000 25\r\n"))
	f.Add([]byte("PROXY UNKNOWN\r\n"))
	f.Add(proxyV2(false, netip.MustParseAddrPort("[2001:db8::7]:1"), netip.MustParseAddrPort("[2001:db8::1]:2"), []byte{1, 2, 3}))
	f.Add(proxyV2(true, netip.MustParseAddrPort("192.0.2.1:1"), netip.MustParseAddrPort("192.0.2.2:2"), nil))
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bufio.NewReader(bytes.NewReader(in))
		h, err := readProxyHeader(r)
		if err != nil {
			return
		}
		if h.ok && (!h.src.IsValid() || !h.dst.IsValid()) {
			t.Fatalf("%q: %+v", in, h)
		}
		rest, _ := io.ReadAll(r)
		if !bytes.HasSuffix(in, rest) || len(rest) >= len(in) {
			t.Fatalf("%q: consumed nothing or more than the input", in)
		}
	})
}
