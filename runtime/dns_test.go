package runtime

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
)

type fakeDNS struct {
	mu      sync.Mutex
	servers [][]string
}

func (f *fakeDNS) LookupMX(_ context.Context, domain string) (*MXAnswer, error) {
	if domain == "nxdomain.example" {
		return nil, errors.New("NXDOMAIN")
	}
	return &MXAnswer{
		DomainName: domain + ".",
		Hosts:      []string{"mx1." + domain + ".", "mx2." + domain + "."},
		ByPref:     map[uint16][]string{5: {"mx1." + domain + "."}, 10: {"mx2." + domain + "."}},
		SiteName:   "(mx1|mx2)." + domain,
		IsMX:       true,
	}, nil
}

func (f *fakeDNS) LookupAddr(_ context.Context, name string) ([]string, error) {
	if name == "nxdomain.example" {
		return nil, errors.New("NXDOMAIN")
	}
	return []string{"192.0.2.1", "2001:db8::1", "192.0.2.2"}, nil
}

func (f *fakeDNS) Configure(servers []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(servers) > 0 && servers[0] == "192.0.2.99:53" {
		return errors.New("unreachable")
	}
	f.servers = append(f.servers, servers)
	return nil
}

func TestDNSLookups(t *testing.T) {
	d := &fakeDNS{}
	r := newRuntime(t, `
local dns = require 'kumo.dns'
assert(dns == kumo.dns)
kumo.on('t', function(what, name, a, b)
  if what == 'mx' then
    local mx = kumo.dns.lookup_mx(name)
    assert(mx.domain_name == name .. '.')
    assert(mx.hosts[1] == 'mx1.' .. name .. '.' and mx.hosts[2] == 'mx2.' .. name .. '.')
    assert(mx.by_pref[5][1] == 'mx1.' .. name .. '.' and mx.by_pref[10][1] == 'mx2.' .. name .. '.')
    assert(mx.is_mx == true and mx.is_secure == false)
    return mx.site_name
  elseif what == 'addr' then
    return kumo.dns.lookup_addr(name, a, b)
  end
end)
`, func(o *Options) { o.DNS = d })
	if out := run(t, r, "mx", "example.com"); out[0] != "(mx1|mx2).example.com" {
		t.Fatalf("mx: %v", out)
	}
	if out := run(t, r, "addr", "example.com"); !reflect.DeepEqual(out[0], []any{"192.0.2.1", "2001:db8::1", "192.0.2.2"}) {
		t.Fatalf("addr: %v", out)
	}
	if out := run(t, r, "addr", "example.com", nil, "Ipv4Only"); !reflect.DeepEqual(out[0], []any{"192.0.2.1", "192.0.2.2"}) {
		t.Fatalf("addr v4: %v", out)
	}
	if out := run(t, r, "addr", "example.com", nil, "Ipv6Only"); !reflect.DeepEqual(out[0], []any{"2001:db8::1"}) {
		t.Fatalf("addr v6: %v", out)
	}
	ctx := context.Background()
	for _, c := range []struct {
		args []any
		want string
	}{
		{[]any{"mx", "nxdomain.example"}, `kumo.dns.lookup_mx("nxdomain.example"): NXDOMAIN`},
		{[]any{"addr", "nxdomain.example"}, `kumo.dns.lookup_addr("nxdomain.example"): NXDOMAIN`},
		{[]any{"addr", "example.com", "other"}, `resolver "other" is not defined`},
		{[]any{"addr", "example.com", nil, "Ipv5Only"}, "unknown variant `Ipv5Only`"},
	} {
		if _, err := r.Call(ctx, "t", c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: got %v want %q", c.args, err, c.want)
		}
	}
}

func TestDNSNotConfigured(t *testing.T) {
	r := newRuntime(t, `kumo.on('t', function(what) if what == 'mx' then return kumo.dns.lookup_mx('example.com') end return kumo.dns.lookup_addr('example.com') end)`)
	for _, what := range []string{"mx", "addr"} {
		if _, err := r.Call(context.Background(), "t", what); err == nil || !strings.Contains(err.Error(), "kumo.dns is not configured") {
			t.Fatalf("%s: %v", what, err)
		}
	}
	rr, err := newRuntimeErr(t, `kumo.on('init', function() kumo.dns.configure_resolver{name_servers={'127.0.0.1'}} end)`)
	if err != nil {
		t.Fatal(err)
	}
	if err := rr.Init(context.Background()); err == nil || !strings.Contains(err.Error(), "kumo.dns is not configured") {
		t.Fatalf("configure without DNS: %v", err)
	}
}

func TestDNSConfigureResolver(t *testing.T) {
	d := &fakeDNS{}
	r := newRuntime(t, `
kumo.on('init', function()
  kumo.dns.configure_resolver{
    name_servers = { '127.0.0.1:5353', '10.0.0.1', '::1', { socket_addr = '[::1]:5300', protocol = 'tcp' } },
    domain = 'example.com', search = { 'example.com' }, options = { ndots = 1 },
  }
end)
kumo.on('t', function() kumo.dns.configure_resolver{name_servers={'127.0.0.1'}} end)
`, func(o *Options) { o.DNS = d })
	want := [][]string{{"127.0.0.1:5353", "10.0.0.1:53", "[::1]:53", "[::1]:5300"}}
	if !reflect.DeepEqual(d.servers, want) {
		t.Fatalf("servers = %v", d.servers)
	}
	if _, err := r.Call(context.Background(), "t"); err == nil || !strings.Contains(err.Error(), "may only be called from the init event, not from the t event") {
		t.Fatalf("outside init: %v", err)
	}
	// top level
	if _, err := newRuntimeErr(t, `kumo.dns.configure_resolver{name_servers={'127.0.0.1'}}`, func(o *Options) { o.DNS = d }); err == nil || !strings.Contains(err.Error(), "not from the top level") {
		t.Fatalf("top level: %v", err)
	}
	for body, want := range map[string]string{
		`{}`:                                  "missing field `name_servers`",
		`{name_servers={'nope'}}`:             `invalid value: string "nope", expected an IP address or ip:port`,
		`{name_servers={{addr='1.1.1.1'}}}`:   "unknown field `addr`",
		`{name_servers={'1.1.1.1'}, bogus=1}`: "unknown field `bogus`",
		`{name_servers='1.1.1.1'}`:            "invalid type: string \"1.1.1.1\", expected a sequence",
		`{name_servers={'192.0.2.99'}}`:       "configure_resolver: unreachable",
		`{name_servers={{socket_addr='1.1.1.1:53', protocol='quic'}}}`: "unknown variant `quic`",
	} {
		rr, err := newRuntimeErr(t, "kumo.on('init', function() kumo.dns.configure_resolver"+body+" end)", func(o *Options) { o.DNS = d })
		if err != nil {
			t.Fatal(err)
		}
		if err := rr.Init(context.Background()); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v want %q", body, err, want)
		}
	}
	// validation mode decodes but does not configure
	n := len(d.servers)
	newRuntime(t, `kumo.on('init', function() kumo.dns.configure_resolver{name_servers={'127.0.0.1'}} end)`, func(o *Options) { o.DNS = d; o.Validating = true })
	if len(d.servers) != n {
		t.Fatal("configured while validating")
	}
}
