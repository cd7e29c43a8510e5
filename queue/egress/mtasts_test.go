package egress

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/dnszone"
	"github.com/kumogo/kumogo/internal/mtasts"
	"github.com/kumogo/kumogo/internal/smtpreply"
	"github.com/kumogo/kumogo/queue/egress/mx"
)

// stsServer serves one policy file over HTTPS on loopback, and a Fetcher
// that reads it for example.com (its TXT record is id=1).
func stsServer(t *testing.T, policy *atomic.Value) *mtasts.Fetcher {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(policy.Load().(string)))
	}))
	t.Cleanup(srv.Close)
	n := 0
	return &mtasts.Fetcher{
		LookupTXT: func(_ context.Context, name string) ([]string, error) {
			if name == "_mta-sts.example.com" {
				n++ // a new id each time: every Get refetches
				return []string{"v=STSv1; id=" + itoa(n)}, nil
			}
			return nil, nil
		},
		Client: srv.Client(),
		URL:    func(string) string { return srv.URL + "/.well-known/mta-sts.txt" },
	}
}

// TestMTASTS: the mode of a policy found during resolution raises the
// connection's TLS when the path has enable_mta_sts: enforce makes TLS
// Required with verified certificates (an untrusted certificate and a
// peer without STARTTLS are refused); testing raises Disabled to
// OpportunisticInsecure and otherwise changes nothing; enable_mta_sts=false
// changes nothing.
func TestMTASTS(t *testing.T) {
	srvTLS, pool := selfSigned(t, "fake.example")
	withTLS := startPeer(t, peerOpts{ext: []string{"PIPELINING", "STARTTLS"}, tls: srvTLS})
	plain := startPeer(t, peerOpts{ext: []string{"PIPELINING"}})
	d := Dialer{RootCAs: pool}
	planFor := func(p *fakePeer, mode string) *mx.ConnectionPlan {
		return &mx.ConnectionPlan{Domain: "example.com", Site: "s", MX: &mx.MXResult{DomainName: "example.com."},
			Candidates: []mx.Candidate{p.candidate()}, STSMode: mode}
	}
	ctx := t.Context()

	// enforce: TLS is used even though the path says Opportunistic...
	path := testPath()
	path.EnableTLS = TLSOpportunisticInsecure
	s, err := d.Connect(ctx, planFor(withTLS, "enforce"), path, nil, "c")
	if err != nil || s.TLS() == nil {
		t.Fatalf("enforce: %v", err)
	}
	s.Close()
	// ...an untrusted certificate is refused...
	untrusted := Dialer{}
	if _, err := untrusted.Connect(ctx, planFor(withTLS, "enforce"), path, nil, "c"); err == nil {
		t.Fatal("untrusted certificate accepted under enforce")
	}
	// ...and never plaintext
	if _, err := d.Connect(ctx, planFor(plain, "enforce"), path, nil, "c"); err == nil || !strings.Contains(ResponseFor(err).Content+err.Error(), "STARTTLS is not advertised") {
		t.Fatalf("plaintext under enforce: %v", err)
	}

	if s, err := d.Connect(ctx, planFor(plain, "testing"), testPath(), nil, "c"); err != nil {
		t.Fatalf("testing mode: %v", err)
	} else {
		s.Close()
	}
	// testing mode raises Disabled to OpportunisticInsecure
	disabled := testPath()
	disabled.EnableTLS = TLSDisabled
	if s, err := untrusted.Connect(ctx, planFor(withTLS, "testing"), disabled, nil, "c"); err != nil || s.TLS() == nil {
		t.Fatalf("testing mode with TLS disabled: %v", err)
	} else {
		s.Close()
	}
	off := testPath()
	off.EnableMTASTS = false
	if s, err := d.Connect(ctx, planFor(plain, "enforce"), off, nil, "c"); err != nil {
		t.Fatalf("enable_mta_sts=false: %v", err)
	} else {
		s.Close()
	}
}

// TestRouteMTASTS: during resolution an enforce policy fetched from a
// local HTTPS server removes the MX hosts it does not list, and the site
// name names only the permitted ones; a policy that permits none of the
// hosts fails the resolution with KumoMTA's text; testing mode keeps every
// host; without a policy source (kumo.dns.set_mta_sts_enabled(false))
// nothing is consulted.
func TestRouteMTASTS(t *testing.T) {
	z, err := dnszone.Parse([]string{`$ORIGIN example.com.
@   MX 10 mx1
@   MX 20 mx2
mx1 A 127.0.0.1
mx2 A 127.0.0.2
`})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := dnszone.Serve(z)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	res, err := mx.NewResolver([]string{srv.Addr}, mx.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var policy atomic.Value
	sts := stsServer(t, &policy)
	proto := &config.QueueProtocol{}
	routeOf := func(r Router) (*mx.ConnectionPlan, error) {
		rt, err := r.Route(t.Context(), "example.com", proto)
		if err != nil {
			return nil, err
		}
		return rt.(route).plan, nil
	}
	hosts := func(p *mx.ConnectionPlan) string {
		var out []string
		for _, c := range p.Candidates {
			out = append(out, c.Name)
		}
		return strings.Join(out, ",")
	}

	policy.Store("version: STSv1\nmode: enforce\nmx: mx2.example.com\nmax_age: 86400\n")
	p, err := routeOf(Router{Resolver: res, STS: sts})
	if err != nil || hosts(p) != "mx2.example.com." || p.Site != "mx2.example.com" || p.STSMode != "enforce" {
		t.Fatalf("enforce listing mx2: %+v %v", p, err)
	}
	policy.Store("version: STSv1\nmode: enforce\nmx: *.mx.cloudflare.net\nmax_age: 86400\n")
	_, err = routeOf(Router{Resolver: res, STS: sts})
	want := `MTA-STS enforce policy for example.com permits none of its MX hosts ["mx1.example.com.", "mx2.example.com."]; allowed mx patterns: ["*.mx.cloudflare.net"]. The destination is undeliverable until its MTA-STS policy is corrected.`
	var se *smtpreply.Error
	if err == nil || err.Error() != want || errors.As(err, &se) {
		t.Fatalf("enforce listing none: %v\nwant the plain error %s", err, want)
	}
	policy.Store("version: STSv1\nmode: testing\nmx: *.mx.cloudflare.net\nmax_age: 86400\n")
	p, err = routeOf(Router{Resolver: res, STS: sts})
	if err != nil || hosts(p) != "mx1.example.com.,mx2.example.com." || p.Site != "(mx1|mx2).example.com" || p.STSMode != "testing" {
		t.Fatalf("testing: %+v %v", p, err)
	}
	policy.Store("version: STSv1\nmode: enforce\nmx: *.mx.cloudflare.net\nmax_age: 86400\n")
	p, err = routeOf(Router{Resolver: res})
	if err != nil || hosts(p) != "mx1.example.com.,mx2.example.com." || p.STSMode != "" {
		t.Fatalf("no policy source: %+v %v", p, err)
	}
}
