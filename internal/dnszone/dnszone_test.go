package dnszone

import (
	"strings"
	"testing"

	"github.com/miekg/dns"
)

func TestServeZone(t *testing.T) {
	z, err := Parse([]string{`$ORIGIN example.com.
@      600 MX 10 mx
mx     600 A 127.0.0.1
alias      CNAME mx
@          TXT "v=spf1 -all"
4.3.2.1.in-addr.arpa. PTR host.example.com.
`})
	if err != nil {
		t.Fatal(err)
	}
	s, err := Serve(z)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, c := range []struct {
		name  string
		qtype uint16
		net   string
		want  string
		rcode int
	}{
		{"example.com.", dns.TypeMX, "udp", "MX\t10 mx.example.com.", dns.RcodeSuccess},
		{"MX.example.com.", dns.TypeA, "tcp", "127.0.0.1", dns.RcodeSuccess},
		{"alias.example.com.", dns.TypeA, "udp", "127.0.0.1", dns.RcodeSuccess},
		{"example.com.", dns.TypeTXT, "udp", "v=spf1 -all", dns.RcodeSuccess},
		{"4.3.2.1.in-addr.arpa.", dns.TypePTR, "udp", "host.example.com.", dns.RcodeSuccess},
		{"mx.example.com.", dns.TypeAAAA, "udp", "", dns.RcodeSuccess},
		{"nope.example.com.", dns.TypeA, "udp", "", dns.RcodeNameError},
	} {
		m := new(dns.Msg)
		m.SetQuestion(c.name, c.qtype)
		resp, _, err := (&dns.Client{Net: c.net}).Exchange(m, s.Addr)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if resp.Rcode != c.rcode {
			t.Errorf("%s: rcode %d, want %d", c.name, resp.Rcode, c.rcode)
		}
		got := ""
		for _, rr := range resp.Answer {
			got += rr.String() + "\n"
		}
		if c.want == "" && len(resp.Answer) != 0 || !strings.Contains(got, c.want) {
			t.Errorf("%s %s: answer %q, want %q", c.name, dns.TypeToString[c.qtype], got, c.want)
		}
	}
	if _, err := Parse([]string{"$ORIGIN x.\nfoo 600 IN BOGUS 1"}); err == nil || !strings.Contains(err.Error(), "zone 1") {
		t.Errorf("bad zone: err = %v", err)
	}
}
