package config

import (
	"net/netip"
	"testing"
)

// The default prohibited_hosts is parsed once, not for every
// get_egress_path_config, and is still what a path without
// prohibited_hosts enforces.
func TestDefaultProhibitedHostsParsedOnceAndEnforced(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { _ = DefaultEgressPath() }); n != 0 {
		t.Fatalf("DefaultEgressPath allocates %v times: prohibited_hosts is parsed on every call", n)
	}
	p, err := DecodeEgressPath(map[string]any{"enable_tls": "Disabled"})
	if err != nil {
		t.Fatal(err)
	}
	for ip, want := range map[string]bool{
		"127.0.0.1": true, "127.9.8.7": true, "::1": true, "0.0.0.0": true, "::": true,
		"::ffff:127.0.0.1": true, "192.0.2.1": false, "2001:db8::1": false,
	} {
		if got := p.ProhibitedHosts.Contains(netip.MustParseAddr(ip)); got != want {
			t.Errorf("default prohibited_hosts contains %s: %v, want %v", ip, got, want)
		}
	}
	// An explicit list replaces the default, and the shared default is
	// not changed by it or by an append to one path's list.
	q, err := DecodeEgressPath(map[string]any{"prohibited_hosts": []any{"192.0.2.0/24"}})
	if err != nil {
		t.Fatal(err)
	}
	if q.ProhibitedHosts.Contains(netip.MustParseAddr("127.0.0.1")) || !q.ProhibitedHosts.Contains(netip.MustParseAddr("192.0.2.9")) {
		t.Fatalf("explicit prohibited_hosts: %v", q.ProhibitedHosts)
	}
	_ = append(p.ProhibitedHosts, netip.MustParsePrefix("192.0.2.0/24"))
	if d := DefaultEgressPath(); len(d.ProhibitedHosts) != 4 || d.ProhibitedHosts.Contains(netip.MustParseAddr("192.0.2.9")) {
		t.Fatalf("the shared default changed: %v", d.ProhibitedHosts)
	}
}
