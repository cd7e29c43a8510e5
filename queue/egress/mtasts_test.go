package egress

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

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

// TestMTASTS: an enforce policy fetched from a local HTTPS server refuses
// an MX it does not list (a TransientFailure naming the policy) and makes
// TLS Required with verified certificates for those it lists; testing
// mode and enable_mta_sts=false change nothing.
func TestMTASTS(t *testing.T) {
	srvTLS, pool := selfSigned(t, "fake.example")
	withTLS := startPeer(t, peerOpts{ext: []string{"PIPELINING", "STARTTLS"}, tls: srvTLS})
	plain := startPeer(t, peerOpts{ext: []string{"PIPELINING"}})
	var policy atomic.Value
	d := Dialer{RootCAs: pool, STS: stsServer(t, &policy)}
	planFor := func(p *fakePeer) *mx.ConnectionPlan {
		return &mx.ConnectionPlan{Domain: "example.com", Site: "s", MX: &mx.MXResult{DomainName: "example.com."},
			Candidates: []mx.Candidate{p.candidate()}}
	}
	ctx := t.Context()

	policy.Store("version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\n")
	_, err := d.Connect(ctx, planFor(withTLS), testPath(), nil, "c")
	r := ResponseFor(err)
	if r.Code != 400 || r.Outcome() != smtpreply.TransientFailure || !strings.Contains(r.Content, "MTA-STS policy (mode enforce, mx mx.example.com) of example.com allows none of the MX hosts fake.example") {
		t.Fatalf("MX outside the policy: %+v", r)
	}
	// listed: TLS is used even though the path says Opportunistic...
	policy.Store("version: STSv1\nmode: enforce\nmx: *.example\nmax_age: 86400\n")
	path := testPath()
	path.EnableTLS = TLSOpportunisticInsecure
	s, err := d.Connect(ctx, planFor(withTLS), path, nil, "c")
	if err != nil || s.TLS() == nil {
		t.Fatalf("listed MX: %v", err)
	}
	s.Close()
	// ...an untrusted certificate is refused...
	untrusted := Dialer{STS: d.STS}
	if _, err := untrusted.Connect(ctx, planFor(withTLS), path, nil, "c"); err == nil {
		t.Fatal("untrusted certificate accepted under enforce")
	}
	// ...and never plaintext
	if _, err := d.Connect(ctx, planFor(plain), path, nil, "c"); err == nil || !strings.Contains(ResponseFor(err).Content+err.Error(), "STARTTLS is not advertised") {
		t.Fatalf("plaintext under enforce: %v", err)
	}

	policy.Store("version: STSv1\nmode: testing\nmx: mx.example.com\nmax_age: 86400\n")
	if s, err := d.Connect(ctx, planFor(plain), testPath(), nil, "c"); err != nil {
		t.Fatalf("testing mode: %v", err)
	} else {
		s.Close()
	}
	// testing mode raises Disabled to OpportunisticInsecure
	disabled := testPath()
	disabled.EnableTLS = TLSDisabled
	if s, err := d.Connect(ctx, planFor(withTLS), disabled, nil, "c"); err != nil || s.TLS() == nil {
		t.Fatalf("testing mode with TLS disabled: %v", err)
	} else {
		s.Close()
	}
	policy.Store("version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\n")
	off := testPath()
	off.EnableMTASTS = false
	if s, err := d.Connect(ctx, planFor(plain), off, nil, "c"); err != nil {
		t.Fatalf("enable_mta_sts=false: %v", err)
	} else {
		s.Close()
	}
}
