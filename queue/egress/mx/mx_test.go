package mx_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/queue/egress/mx"
	"github.com/kumogo/kumogo/queue/egress/mx/mxtest"
)

// clock is a settable time source for cache tests.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }
func (c *clock) opts() mx.Options        { return mx.Options{Now: c.Now, Timeout: 2 * time.Second} }
func ctx(t *testing.T) context.Context   { return t.Context() }

// ok(f())(t) fails t when f returned an error.
func ok[T any](v T, err error) func(*testing.T) T {
	return func(t *testing.T) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

var gmailZone = []string{
	"gmail.com. 300 IN MX 30 alt3.gmail-smtp-in.l.google.com.",
	"gmail.com. 300 IN MX 40 alt4.gmail-smtp-in.l.google.com.",
	"gmail.com. 300 IN MX 5 gmail-smtp-in.l.google.com.",
	"gmail.com. 300 IN MX 10 alt1.gmail-smtp-in.l.google.com.",
	"gmail.com. 300 IN MX 20 alt2.gmail-smtp-in.l.google.com.",
	"gmail-smtp-in.l.google.com. 300 IN A 192.0.2.5",
	"alt1.gmail-smtp-in.l.google.com. 300 IN A 192.0.2.10",
	"alt2.gmail-smtp-in.l.google.com. 300 IN A 192.0.2.20",
	"alt3.gmail-smtp-in.l.google.com. 300 IN A 192.0.2.30",
	"alt4.gmail-smtp-in.l.google.com. 300 IN A 192.0.2.40",
}

func newResolver(t *testing.T, s *mxtest.Server, o mx.Options) *mx.Resolver {
	t.Helper()
	if o.Timeout == 0 {
		o.Timeout = 2 * time.Second
	}
	return ok(mx.NewResolver([]string{s.Addr}, o))(t)
}

func TestLookupMXPreferenceOrder(t *testing.T) {
	s := mxtest.Start(t, gmailZone...)
	r := newResolver(t, s, mx.Options{})
	res := ok(r.LookupMX(ctx(t), "Gmail.COM"))(t)
	if res.DomainName != "gmail.com." {
		t.Errorf("DomainName = %q", res.DomainName)
	}
	want := []string{
		"gmail-smtp-in.l.google.com.",
		"alt1.gmail-smtp-in.l.google.com.",
		"alt2.gmail-smtp-in.l.google.com.",
		"alt3.gmail-smtp-in.l.google.com.",
		"alt4.gmail-smtp-in.l.google.com.",
	}
	if !slices.Equal(res.Hosts, want) {
		t.Errorf("Hosts = %q", res.Hosts)
	}
	if got := res.ByPref[20]; !slices.Equal(got, []string{"alt2.gmail-smtp-in.l.google.com."}) {
		t.Errorf("ByPref[20] = %q", got)
	}
	if !slices.Equal(res.Prefs(), []uint16{5, 10, 20, 30, 40}) {
		t.Errorf("Prefs = %v", res.Prefs())
	}
	if res.SiteName != "(alt1|alt2|alt3|alt4)?.gmail-smtp-in.l.google.com" {
		t.Errorf("SiteName = %q", res.SiteName)
	}
	if res.IsImplicit || res.IsNullMX || res.IsDomainLiteral {
		t.Errorf("flags: %+v", res)
	}
}

func TestLookupMXSamePrefSortedByName(t *testing.T) {
	s := mxtest.Start(t,
		"example.com. 60 IN MX 10 mx-b.example.com.",
		"example.com. 60 IN MX 10 MX-A.example.com.",
		"example.com. 60 IN MX 20 backup.example.net.",
		"example.com. 60 IN MX 10 mx-c.example.com.",
	)
	r := newResolver(t, s, mx.Options{})
	res := ok(r.LookupMX(ctx(t), "example.com"))(t)
	want := []string{"mx-a.example.com.", "mx-b.example.com.", "mx-c.example.com.", "backup.example.net."}
	if !slices.Equal(res.Hosts, want) {
		t.Errorf("Hosts = %q", res.Hosts)
	}
	if len(res.ByPref[10]) != 3 || len(res.ByPref[20]) != 1 {
		t.Errorf("ByPref = %v", res.ByPref)
	}
	if res.SiteName != "(mx-a|mx-b|mx-c|backup).example.(com|net)" {
		t.Errorf("SiteName = %q", res.SiteName)
	}
}

func TestLookupMXImplicit(t *testing.T) {
	s := mxtest.Start(t,
		"nomx.example. 60 IN A 192.0.2.1",
		"nomx.example. 60 IN AAAA 2001:db8::1",
	)
	r := newResolver(t, s, mx.Options{})
	res := ok(r.LookupMX(ctx(t), "nomx.example"))(t)
	if !res.IsImplicit || !slices.Equal(res.Hosts, []string{"nomx.example."}) || res.SiteName != "nomx.example" {
		t.Fatalf("implicit MX: %+v", res)
	}
	plan := ok(r.Plan(ctx(t), "nomx.example", nil, 25, ""))(t)
	var got []string
	for _, c := range plan.Candidates {
		if c.Name != "nomx.example." || c.Port != 25 {
			t.Errorf("candidate %+v", c)
		}
		got = append(got, c.Addr.String())
	}
	slices.Sort(got)
	if !slices.Equal(got, []string{"192.0.2.1", "2001:db8::1"}) {
		t.Errorf("addresses %q", got)
	}
	plan = ok(r.Plan(ctx(t), "nomx.example", nil, 25, mx.Ipv6Only))(t)
	if len(plan.Candidates) != 1 || plan.Candidates[0].Addr.String() != "2001:db8::1" {
		t.Errorf("Ipv6Only plan %+v", plan.Candidates)
	}
}

func TestLookupMXNXDOMAIN(t *testing.T) {
	s := mxtest.Start(t, gmailZone...)
	r := newResolver(t, s, mx.Options{})
	_, err := r.LookupMX(ctx(t), "nosuch.example")
	if !errors.Is(err, mx.ErrNXDOMAIN) || !mx.IsNXDOMAIN(err) {
		t.Fatalf("err = %v", err)
	}
	if got := err.Error(); got != "mx: lookup nosuch.example. MX: NXDOMAIN" {
		t.Errorf("text %q", got)
	}
	// negatively cached
	_, err = r.LookupMX(ctx(t), "nosuch.example")
	if !errors.Is(err, mx.ErrNXDOMAIN) {
		t.Fatal(err)
	}
	if n := s.Queries("nosuch.example", "MX", ""); n != 1 {
		t.Errorf("queries = %d, want 1 (negative cache)", n)
	}
	if _, err := r.Plan(ctx(t), "nosuch.example", nil, 25, ""); !mx.IsNXDOMAIN(err) {
		t.Errorf("plan err = %v", err)
	}
}

func TestLookupMXNull(t *testing.T) {
	s := mxtest.Start(t, "null.example. 60 IN MX 0 .")
	r := newResolver(t, s, mx.Options{})
	res := ok(r.LookupMX(ctx(t), "null.example"))(t)
	if !res.IsNullMX || len(res.Hosts) != 0 {
		t.Fatalf("%+v", res)
	}
	plan, err := r.Plan(ctx(t), "null.example", nil, 25, "")
	var f *mx.Failure
	if !errors.As(err, &f) || f.Code != 556 || err.Error() != "556 5.1.10 Recipient address has a null MX" || !f.Permanent() {
		t.Fatalf("err = %v", err)
	}
	if plan == nil || plan.Site != "" || plan.MX != res {
		t.Errorf("plan with null MX: %+v", plan)
	}
}

func TestMXDidNotResolve(t *testing.T) {
	s := mxtest.Start(t,
		"dangling.example. 60 IN MX 10 gone.example.",
		"dangling.example. 60 IN MX 20 empty.example.",
		"empty.example. 60 IN TXT \"no addresses\"",
	)
	r := newResolver(t, s, mx.Options{})
	plan, err := r.Plan(ctx(t), "dangling.example", nil, 25, "")
	var f *mx.Failure
	if !errors.As(err, &f) || err.Error() != "451 4.4.4 MX didn't resolve to any hosts" || f.Permanent() {
		t.Fatalf("err = %v", err)
	}
	if plan.Site != "(gone|empty).example" {
		t.Errorf("site %q", plan.Site)
	}
}

func TestPlanOrderAndShuffle(t *testing.T) {
	s := mxtest.Start(t,
		"multi.example. 60 IN MX 20 b.multi.example.",
		"multi.example. 60 IN MX 10 a1.multi.example.",
		"multi.example. 60 IN MX 10 a2.multi.example.",
		"a1.multi.example. 60 IN A 192.0.2.1",
		"a1.multi.example. 60 IN A 192.0.2.2",
		"a2.multi.example. 60 IN A 192.0.2.3",
		"a2.multi.example. 60 IN AAAA 2001:db8::3",
		"b.multi.example. 60 IN A 192.0.2.9",
	)
	r := newResolver(t, s, mx.Options{})
	firsts := map[string]bool{}
	for range 60 {
		plan := ok(r.Plan(ctx(t), "multi.example", nil, 2525, ""))(t)
		if len(plan.Candidates) != 5 {
			t.Fatalf("candidates %+v", plan.Candidates)
		}
		var lvl10 []string
		for _, c := range plan.Candidates[:4] {
			if c.Pref != 10 || c.Port != 2525 {
				t.Fatalf("level 10 candidate %+v", c)
			}
			lvl10 = append(lvl10, c.Addr.String())
		}
		slices.Sort(lvl10)
		if !slices.Equal(lvl10, []string{"192.0.2.1", "192.0.2.2", "192.0.2.3", "2001:db8::3"}) {
			t.Fatalf("level 10 = %q", lvl10)
		}
		if last := plan.Candidates[4]; last.Name != "b.multi.example." || last.Addr.String() != "192.0.2.9" {
			t.Fatalf("last = %+v", last)
		}
		firsts[plan.Candidates[0].Addr.String()] = true
	}
	if len(firsts) < 2 {
		t.Errorf("addresses within a level were never shuffled: %v", firsts)
	}
	if s.Queries("multi.example", "MX", "") != 1 || s.Queries("a1.multi.example", "A", "") != 1 {
		t.Errorf("answers were not cached")
	}
}

func TestPlanDomainPort(t *testing.T) {
	s := mxtest.Start(t, gmailZone...)
	r := newResolver(t, s, mx.Options{})
	plan := ok(r.Plan(ctx(t), "gmail.com:2526", nil, 25, mx.Ipv4Only))(t)
	if plan.Site != "(alt1|alt2|alt3|alt4)?.gmail-smtp-in.l.google.com:2526" {
		t.Errorf("site %q", plan.Site)
	}
	for _, c := range plan.Candidates {
		if c.Port != 2526 {
			t.Errorf("candidate %v", c)
		}
	}
	if c := plan.Candidates[0]; c.Name != "gmail-smtp-in.l.google.com." || c.String() != "192.0.2.5:2526" {
		t.Errorf("first = %+v", c)
	}
}

func TestTTLCache(t *testing.T) {
	s := mxtest.Start(t,
		"ttl.example. 30 IN MX 10 mx.ttl.example.",
		"ttl.example. 60 IN MX 20 mx2.ttl.example.",
		"mx.ttl.example. 10 IN A 192.0.2.7",
	)
	clk := newClock()
	r := newResolver(t, s, clk.opts())
	first := ok(r.LookupMX(ctx(t), "ttl.example"))(t)
	second := ok(r.LookupMX(ctx(t), "TTL.example."))(t)
	if first != second {
		t.Errorf("second lookup not served from cache")
	}
	if n := s.Queries("ttl.example", "MX", ""); n != 1 {
		t.Fatalf("MX queries = %d, want 1", n)
	}
	if want := clk.Now().Add(30 * time.Second); !first.Expires.Equal(want) {
		t.Errorf("Expires = %v, want %v (smallest TTL)", first.Expires, want)
	}
	clk.Advance(29 * time.Second)
	ok(r.LookupMX(ctx(t), "ttl.example"))(t)
	if n := s.Queries("ttl.example", "MX", ""); n != 1 {
		t.Fatalf("MX queries before expiry = %d", n)
	}
	clk.Advance(2 * time.Second)
	ok(r.LookupMX(ctx(t), "ttl.example"))(t)
	if n := s.Queries("ttl.example", "MX", ""); n != 2 {
		t.Fatalf("MX queries after expiry = %d, want 2", n)
	}

	ok(r.LookupAddr(ctx(t), "mx.ttl.example", mx.Ipv4Only))(t)
	ok(r.LookupAddr(ctx(t), "mx.ttl.example", mx.Ipv4Only))(t)
	if n := s.Queries("mx.ttl.example", "A", ""); n != 1 {
		t.Errorf("A queries = %d", n)
	}
	clk.Advance(11 * time.Second)
	ok(r.LookupAddr(ctx(t), "mx.ttl.example", mx.Ipv4Only))(t)
	if n := s.Queries("mx.ttl.example", "A", ""); n != 2 {
		t.Errorf("A queries after TTL = %d", n)
	}

	// negative caching uses the SOA minimum (60 s at the fake server)
	_, err := r.LookupMX(ctx(t), "neg.ttl.example")
	if !mx.IsNXDOMAIN(err) {
		t.Fatal(err)
	}
	clk.Advance(59 * time.Second)
	_, _ = r.LookupMX(ctx(t), "neg.ttl.example")
	if n := s.Queries("neg.ttl.example", "MX", ""); n != 1 {
		t.Errorf("negative answer queries = %d, want 1", n)
	}
	clk.Advance(2 * time.Second)
	_, _ = r.LookupMX(ctx(t), "neg.ttl.example")
	if n := s.Queries("neg.ttl.example", "MX", ""); n != 2 {
		t.Errorf("negative answer queries after SOA minimum = %d, want 2", n)
	}
}

func TestConcurrentLookupsShareOneQuery(t *testing.T) {
	s := mxtest.Start(t, gmailZone...)
	r := newResolver(t, s, mx.Options{})
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := r.Plan(context.Background(), "gmail.com", nil, 25, ""); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if n := s.Queries("gmail.com", "MX", ""); n != 1 {
		t.Errorf("MX queries = %d, want 1", n)
	}
}

func TestTruncatedRetriesOverTCP(t *testing.T) {
	s := mxtest.Start(t, gmailZone...)
	s.Truncate("gmail.com")
	r := newResolver(t, s, mx.Options{})
	res := ok(r.LookupMX(ctx(t), "gmail.com"))(t)
	if len(res.Hosts) != 5 {
		t.Fatalf("hosts %q", res.Hosts)
	}
	if s.Queries("gmail.com", "MX", "udp") != 1 || s.Queries("gmail.com", "MX", "tcp") != 1 {
		t.Errorf("udp=%d tcp=%d", s.Queries("gmail.com", "MX", "udp"), s.Queries("gmail.com", "MX", "tcp"))
	}
}

func TestServFailAndFallbackServer(t *testing.T) {
	bad := mxtest.Start(t, gmailZone...)
	bad.ServFail("gmail.com")
	good := mxtest.Start(t, gmailZone...)
	r := ok(mx.NewResolver([]string{bad.Addr, good.Addr}, mx.Options{Timeout: 2 * time.Second}))(t)
	res := ok(r.LookupMX(ctx(t), "gmail.com"))(t)
	if len(res.Hosts) != 5 {
		t.Fatalf("hosts %q", res.Hosts)
	}
	only := ok(mx.NewResolver([]string{bad.Addr}, mx.Options{Timeout: 2 * time.Second, Attempts: 1}))(t)
	_, err := only.LookupMX(ctx(t), "gmail.com")
	if err == nil || mx.IsNXDOMAIN(err) {
		t.Fatalf("err = %v", err)
	}
	t.Log(err)
}

func TestUnreachableServerTimesOut(t *testing.T) {
	// A UDP socket that never answers.
	s := mxtest.Start(t)
	s.Close()
	r := ok(mx.NewResolver([]string{s.Addr}, mx.Options{Timeout: 100 * time.Millisecond, Attempts: 1}))(t)
	start := time.Now()
	if _, err := r.LookupMX(ctx(t), "gmail.com"); err == nil {
		t.Fatal("no error")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %v", d)
	}
}

func TestLookupAddrStrategies(t *testing.T) {
	s := mxtest.Start(t,
		"dual.example. 60 IN A 192.0.2.1",
		"dual.example. 60 IN AAAA 2001:db8::1",
		"v6.example. 60 IN AAAA 2001:db8::6",
		"v4.example. 60 IN A 192.0.2.4",
	)
	r := newResolver(t, s, mx.Options{})
	cases := []struct {
		host, strategy string
		want           []string
	}{
		{"dual.example", "", []string{"192.0.2.1", "2001:db8::1"}},
		{"dual.example", mx.Ipv4AndIpv6, []string{"192.0.2.1", "2001:db8::1"}},
		{"dual.example", mx.Ipv4Only, []string{"192.0.2.1"}},
		{"dual.example", mx.Ipv6Only, []string{"2001:db8::1"}},
		{"dual.example", mx.Ipv4ThenIpv6, []string{"192.0.2.1"}},
		{"dual.example", mx.Ipv6ThenIpv4, []string{"2001:db8::1"}},
		{"v6.example", mx.Ipv4ThenIpv6, []string{"2001:db8::6"}},
		{"v4.example", mx.Ipv6ThenIpv4, []string{"192.0.2.4"}},
		{"v4.example", mx.Ipv6Only, nil},
		{"10.1.2.3", mx.Ipv6Only, []string{"10.1.2.3"}},
		{"[::1]", "", []string{"::1"}},
	}
	for _, c := range cases {
		addrs, err := r.LookupAddr(ctx(t), c.host, c.strategy)
		if err != nil {
			t.Errorf("%s %s: %v", c.host, c.strategy, err)
			continue
		}
		var got []string
		for _, a := range addrs {
			got = append(got, a.String())
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%s %s = %q, want %q", c.host, c.strategy, got, c.want)
		}
	}
	if _, err := r.LookupAddr(ctx(t), "nosuch.example", ""); !mx.IsNXDOMAIN(err) {
		t.Errorf("nxdomain: %v", err)
	}
	if _, err := r.LookupAddr(ctx(t), "v4.example", "Bogus"); err == nil {
		t.Errorf("bogus strategy accepted")
	}
}

func TestDomainLiterals(t *testing.T) {
	cases := []struct {
		in   string
		addr string
		port int
		ok   bool
	}{
		{"[1.2.3.4]", "1.2.3.4", 0, true},
		{"[1.2.3.4]:2026", "1.2.3.4", 2026, true},
		{"[1.2.3.4:2026]", "1.2.3.4", 2026, true},
		{"[IPv6:::1]", "::1", 0, true},
		{"[ipv6:2001:db8::1]:25", "2001:db8::1", 25, true},
		{"[::1]", "::1", 0, true},
		{"[::1]:2026", "::1", 2026, true},
		{"[1.2.3.4:25]:26", "", 0, false},
		{"[1.2.3.4", "", 0, false},
		{"[example.com]", "", 0, false},
		{"[1.2.3.4]x", "", 0, false},
		{"[1.2.3.4]:0", "", 0, false},
		{"[IPv6:1.2.3.4]", "", 0, false},
	}
	for _, c := range cases {
		a, p, err := mx.ParseDomainLiteral(c.in)
		if (err == nil) != c.ok {
			t.Errorf("%s: err = %v", c.in, err)
			continue
		}
		if c.ok && (a.String() != c.addr || p != c.port) {
			t.Errorf("%s = %s %d", c.in, a, p)
		}
	}

	s := mxtest.Start(t)
	r := newResolver(t, s, mx.Options{})
	res := ok(r.LookupMX(ctx(t), "[127.0.0.1]:2026"))(t)
	if !res.IsDomainLiteral || res.SiteName != "127.0.0.1:2026" || !slices.Equal(res.Hosts, []string{"127.0.0.1:2026"}) {
		t.Errorf("%+v", res)
	}
	plan := ok(r.Plan(ctx(t), "[IPv6:::1]", nil, 25, ""))(t)
	if plan.Site != "::1" || len(plan.Candidates) != 1 || plan.Candidates[0].String() != "[::1]:25" {
		t.Errorf("plan %+v", plan)
	}
	plan = ok(r.Plan(ctx(t), "[10.0.0.1:2026]", nil, 25, ""))(t)
	if plan.Site != "10.0.0.1:2026" || plan.Candidates[0].String() != "10.0.0.1:2026" {
		t.Errorf("plan %+v", plan)
	}
	if s.Total() != 0 {
		t.Errorf("literals sent %d DNS queries", s.Total())
	}
}

func TestMXListPlan(t *testing.T) {
	s := mxtest.Start(t,
		"relay.example. 60 IN A 192.0.2.50",
		"relay.example. 60 IN AAAA 2001:db8::50",
	)
	r := newResolver(t, s, mx.Options{})
	list := []config.MXListEntry{
		{Name: "relay.example:2587"},
		{Name: "[10.0.0.1]"},
		{Name: "backup", Addr: "10.0.0.2:26"},
		{Name: "10.0.0.3"},
		{Name: "gone.example"},
	}
	plan := ok(r.Plan(ctx(t), "anything.example", list, 25, ""))(t)
	if plan.Site != "mx_list:relay.example:2587,[10.0.0.1],10.0.0.2:26,10.0.0.3,gone.example" {
		t.Errorf("site %q", plan.Site)
	}
	var got []string
	for _, c := range plan.Candidates {
		got = append(got, c.Name+"="+c.String())
	}
	want := []string{
		"relay.example=192.0.2.50:2587",
		"relay.example=[2001:db8::50]:2587",
		"10.0.0.1=10.0.0.1:25",
		"backup=10.0.0.2:26",
		"10.0.0.3=10.0.0.3:25",
	}
	if !slices.Equal(got, want) {
		t.Errorf("candidates\n got %q\nwant %q", got, want)
	}
	if s.Queries("anything.example", "MX", "") != 0 {
		t.Errorf("mx_list plan queried MX")
	}
	if site := mx.MXListSite([]config.MXListEntry{{Name: "localhost:2026"}}); site != "mx_list:localhost:2026" {
		t.Errorf("site %q", site)
	}
	_, err := r.Plan(ctx(t), "x", []config.MXListEntry{{Name: "gone.example"}}, 25, "")
	if err == nil || err.Error() != "451 4.4.4 MX didn't resolve to any hosts" {
		t.Errorf("err = %v", err)
	}
}

func TestFilterHosts(t *testing.T) {
	plan := &mx.ConnectionPlan{Site: "s", Candidates: []mx.Candidate{
		{Name: "a", Addr: netip.MustParseAddr("192.0.2.1"), Port: 25},
		{Name: "b", Addr: netip.MustParseAddr("10.9.9.9"), Port: 25},
	}}
	out := ok(mx.FilterHosts(plan, config.DefaultEgressPath().ProhibitedHosts, config.MustCIDRList("10.0.0.0/8")))(t)
	if len(out.Candidates) != 1 || out.Candidates[0].Name != "a" || len(plan.Candidates) != 2 {
		t.Errorf("filtered %+v (orig %+v)", out.Candidates, plan.Candidates)
	}
	_, err := mx.FilterHosts(plan, nil, config.MustCIDRList("192.0.2.0/24", "10.0.0.0/8"))
	if err == nil || err.Error() != "451 4.4.4 KumoMTA internal: MX consisted solely of hosts on the skip_hosts list" {
		t.Errorf("skip all: %v", err)
	}
	loop := &mx.ConnectionPlan{Candidates: []mx.Candidate{{Name: "l", Addr: netip.MustParseAddr("127.0.0.1"), Port: 2026}}}
	_, err = mx.FilterHosts(loop, config.DefaultEgressPath().ProhibitedHosts, nil)
	var f *mx.Failure
	if !errors.As(err, &f) || !f.Permanent() || err.Error() != "550 5.4.4 127.0.0.1 is on the list of prohibited_hosts" {
		t.Errorf("prohibited: %v", err)
	}
	if _, err := mx.FilterHosts(loop, config.CIDRList{}, nil); err != nil {
		t.Errorf("prohibited_hosts={}: %v", err)
	}
}

func TestSiteName(t *testing.T) {
	cases := []struct {
		hosts []string
		want  string
	}{
		{[]string{"gmail-smtp-in.l.google.com.", "alt1.gmail-smtp-in.l.google.com.", "alt2.gmail-smtp-in.l.google.com.", "alt3.gmail-smtp-in.l.google.com.", "alt4.gmail-smtp-in.l.google.com."},
			"(alt1|alt2|alt3|alt4)?.gmail-smtp-in.l.google.com"},
		{[]string{"mx.example.com"}, "mx.example.com"},
		{[]string{"MX.Example.COM."}, "mx.example.com"},
		{[]string{"mx1.example.com", "mx2.example.com"}, "(mx1|mx2).example.com"},
		{[]string{"a.b.example.com", "c.example.com"}, "a?.(b|c).example.com"},
		{[]string{"mx1.hotmail.com", "mx1.outlook.com"}, "mx1.(hotmail|outlook).com"},
		{[]string{"x.example.com", "x.example.com"}, "x.example.com"},
		{[]string{"eu-smtp-inbound-1.mimecast.com", "eu-smtp-inbound-2.mimecast.com"}, "(eu-smtp-inbound-1|eu-smtp-inbound-2).mimecast.com"},
		{nil, ""},
	}
	for _, c := range cases {
		if got := mx.SiteName(c.hosts); got != c.want {
			t.Errorf("SiteName(%q) = %q, want %q", c.hosts, got, c.want)
		}
	}
}

func TestFromResolvConf(t *testing.T) {
	host := "127.0.0.1"
	path := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(path, []byte("# test\nnameserver "+host+"\noptions timeout:1 attempts:1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// resolv.conf has no port syntax, so this only checks the parsing; no
	// query is sent.
	r := ok(mx.FromResolvConf(path, mx.Options{}))(t)
	if got := r.Servers(); !slices.Equal(got, []string{host + ":53"}) {
		t.Errorf("servers %q", got)
	}
	if _, err := mx.FromResolvConf(filepath.Join(t.TempDir(), "missing"), mx.Options{}); err == nil {
		t.Errorf("missing file accepted")
	}
	if _, err := mx.NewResolver(nil, mx.Options{}); err == nil {
		t.Errorf("no servers accepted")
	}
	if _, err := mx.NewResolver([]string{"dns.example"}, mx.Options{}); err == nil {
		t.Errorf("name as server accepted")
	}
}

// TestApplyStrategy: filtering a both-families plan gives what a lookup
// with the strategy would have given, and literals are left alone.
func TestApplyStrategy(t *testing.T) {
	c := func(name, addr string) mx.Candidate {
		return mx.Candidate{Name: name, Addr: netip.MustParseAddr(addr), Port: 25, Pref: 10}
	}
	cands := []mx.Candidate{
		c("a.example.", "192.0.2.1"), c("a.example.", "2001:db8::1"),
		c("b.example.", "2001:db8::2"), // no IPv4 address
		c("c.example.", "192.0.2.3"),   // no IPv6 address
		c("[2001:db8::9]", "2001:db8::9"),
	}
	names := func(cs []mx.Candidate) string {
		var out []string
		for _, x := range cs {
			out = append(out, x.Addr.String())
		}
		return strings.Join(out, " ")
	}
	for strategy, want := range map[string]string{
		"":              "192.0.2.1 2001:db8::1 2001:db8::2 192.0.2.3 2001:db8::9",
		mx.Ipv4AndIpv6:  "192.0.2.1 2001:db8::1 2001:db8::2 192.0.2.3 2001:db8::9",
		mx.Ipv4Only:     "192.0.2.1 192.0.2.3 2001:db8::9",
		mx.Ipv6Only:     "2001:db8::1 2001:db8::2 2001:db8::9",
		mx.Ipv4ThenIpv6: "192.0.2.1 2001:db8::2 192.0.2.3 2001:db8::9",
		mx.Ipv6ThenIpv4: "2001:db8::1 2001:db8::2 192.0.2.3 2001:db8::9",
	} {
		if got := names(mx.ApplyStrategy(cands, strategy)); got != want {
			t.Errorf("%q: %s, want %s", strategy, got, want)
		}
	}
	if len(cands) != 5 || cands[1].Addr.String() != "2001:db8::1" {
		t.Fatal("ApplyStrategy modified its input")
	}
}

// TestLocalhostResolvesWithoutDNS: "localhost" (and names under it) are
// the loopback addresses (RFC 6761), as KumoMTA's resolver answers them,
// so mx_list = { 'localhost:PORT' } reaches a local sink; the name server
// is never asked.
func TestLocalhostResolvesWithoutDNS(t *testing.T) {
	s := mxtest.Start(t)
	r := newResolver(t, s, mx.Options{})
	plan, err := r.Plan(ctx(t), "anything.example", []config.MXListEntry{{Name: "localhost:2026"}}, 25, "")
	if err != nil {
		t.Fatalf("plan: %v", err)
	}
	var got []string
	for _, c := range plan.Candidates {
		got = append(got, c.Name+"="+c.String())
	}
	if want := []string{"localhost=127.0.0.1:2026", "localhost=[::1]:2026"}; !slices.Equal(got, want) {
		t.Errorf("candidates %q, want %q", got, want)
	}
	for strategy, want := range map[string]string{mx.Ipv4Only: "[127.0.0.1]", mx.Ipv6Only: "[::1]", mx.Ipv6ThenIpv4: "[::1]"} {
		addrs, err := r.LookupAddr(ctx(t), "Sub.LocalHost.", strategy)
		if err != nil || fmt.Sprint(addrs) != want {
			t.Errorf("%s: %v %v, want %s", strategy, addrs, err, want)
		}
	}
	if n := s.Queries("localhost", "A", "") + s.Queries("localhost", "AAAA", ""); n != 0 {
		t.Errorf("%d queries for localhost", n)
	}
}

func TestLookupPTRAndTXT(t *testing.T) {
	s := mxtest.Start(t,
		"4.3.2.1.in-addr.arpa. 60 IN PTR host.example.",
		`example. 60 IN TXT "v=spf1 " "-all"`,
	)
	r := newResolver(t, s, mx.Options{})
	ptr, err := r.LookupPTR(ctx(t), netip.MustParseAddr("1.2.3.4"))
	if err != nil || !slices.Equal(ptr, []string{"host.example."}) {
		t.Fatalf("ptr %v %v", ptr, err)
	}
	txt, err := r.LookupTXT(ctx(t), "Example")
	if err != nil || !slices.Equal(txt, []string{"v=spf1 -all"}) {
		t.Fatalf("txt %v %v", txt, err)
	}
	if _, err := r.LookupTXT(ctx(t), "gone.example"); !errors.Is(err, mx.ErrNXDOMAIN) {
		t.Fatalf("nx: %v", err)
	}
}
