package runtime

import (
	"context"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// TestConfigureTestResolver: the zones are answered on the address the
// resolver is pointed at, until the runtime closes.
func TestConfigureTestResolver(t *testing.T) {
	d := &fakeDNS{}
	r := newRuntime(t, `
kumo.on('init', function()
  kumo.dns.configure_test_resolver {
    [[
$ORIGIN example.test.
@    600 MX 10 mx
mx   600 A 127.0.0.1
]],
  }
end)`, func(o *Options) { o.DNS = d })
	if len(d.servers) != 1 || len(d.servers[0]) != 1 || !strings.HasPrefix(d.servers[0][0], "127.0.0.1:") {
		t.Fatalf("configured %v", d.servers)
	}
	addr := d.servers[0][0]
	m := new(dns.Msg)
	m.SetQuestion("mx.example.test.", dns.TypeA)
	resp, _, err := new(dns.Client).ExchangeContext(context.Background(), m, addr)
	if err != nil || len(resp.Answer) != 1 || resp.Answer[0].(*dns.A).A.String() != "127.0.0.1" {
		t.Fatalf("answer %v, err %v", resp, err)
	}
	r.Close()
	c := &dns.Client{Timeout: 200e6}
	if _, _, err := c.Exchange(m, addr); err == nil {
		t.Fatal("server still answers after Close")
	}

	_, err = newRuntimeErr(t, `kumo.dns.configure_test_resolver { "$ORIGIN x.\nfoo 600 IN BOGUS 1" }`, func(o *Options) { o.DNS = d })
	if err == nil || !strings.Contains(err.Error(), "configure_test_resolver: zone 1") {
		t.Fatalf("bad zone: %v", err)
	}
}

func TestDefineResolverBadConfig(t *testing.T) {
	d := &fakeDNS{}
	for _, c := range []struct{ src, want string }{
		{`kumo.dns.define_resolver('x', {})`, "expected exactly one of `Hickory` or `Test`"},
		{`kumo.dns.define_resolver('x', {Unbound = {}})`, "unknown field `Unbound`"},
		{`kumo.dns.define_resolver('x', {Hickory = {name_servers = {'nope'}}})`, "expected an IP address"},
		{`kumo.dns.define_resolver('x', {Test = {zones = {'$ORIGIN x.\nfoo 1 IN BOGUS 1'}}})`, "zone 1"},
		{`kumo.dns.lookup_mx('example.com', 'undefined')`, "resolver \"undefined\" is not defined"},
	} {
		_, err := newRuntimeErr(t, c.src, func(o *Options) { o.DNS = d })
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v", c.src, err)
		}
	}
}
