package mailauth_test

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/kumogo/kumogo/internal/mailauth"
)

// memResolver answers TXT from a map and every other lookup with a fixed
// address, in memory (fuzzing needs no sockets).
type memResolver map[string][]string

func (m memResolver) LookupTXT(_ context.Context, name string) ([]string, error) {
	if v, ok := m[strings.ToLower(strings.TrimSuffix(name, "."))]; ok {
		return v, nil
	}
	return nil, fmt.Errorf("%w: %s", mailauth.ErrNotFound, name)
}

func (m memResolver) LookupIP(context.Context, string) ([]netip.Addr, error) {
	return []netip.Addr{netip.MustParseAddr("192.0.2.1")}, nil
}

func (m memResolver) LookupMX(context.Context, string) ([]string, error) {
	return []string{"mx.example.com."}, nil
}

func (m memResolver) LookupPTR(context.Context, netip.Addr) ([]string, error) {
	return []string{"host.example.com."}, nil
}

// FuzzSPFRecord evaluates arbitrary SPF records (the record parser is
// blitiri.com.ar/go/spf's, reached through CheckSPF): every outcome is
// one of RFC 7208's seven results, and nothing panics.
func FuzzSPFRecord(f *testing.F) {
	for _, s := range []string{
		"v=spf1 -all", "v=spf1 ip4:192.0.2.0/24 ~all", "v=spf1 include:other.example ?all",
		"v=spf1 a mx ptr exists:%{i}.bl.example redirect=other.example", "v=spf1 ip6:2001:db8::/32 -all exp=%{l}",
		"v=spf1 a:%{d1r}.example/24//64 -all",
	} {
		f.Add(s, "v=spf1 +all")
	}
	valid := map[string]bool{"none": true, "neutral": true, "pass": true, "fail": true, "softfail": true, "temperror": true, "permerror": true}
	f.Fuzz(func(t *testing.T, record, other string) {
		r := memResolver{"example.com": {record}, "other.example": {other}}
		disp, res := mailauth.CheckSPF(context.Background(), r, mailauth.SPFQuery{
			IP: netip.MustParseAddr("192.0.2.1"), Sender: "user@example.com", HELO: "helo.example"})
		if !valid[disp] || res.Result != disp || res.Method != "spf" {
			t.Fatalf("%q: %s %+v", record, disp, res)
		}
	})
}
