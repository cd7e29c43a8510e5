package mx_test

import (
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/dnszone"
	"github.com/kumogo/kumogo/queue/egress/mx"
)

// validating serves zone like a DNSSEC-validating recursive resolver
// whose signed names are secure: it relays dnszone's answers (which
// follow CNAMEs) and sets the AD bit only when the asked name and every
// owner name in the answer are signed, as a validator does for an alias
// chain that leaves the signed zone.
func validating(t *testing.T, zone string, secure ...string) string {
	t.Helper()
	z, err := dnszone.Parse([]string{zone})
	if err != nil {
		t.Fatal(err)
	}
	upstream, err := dnszone.Serve(z)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { upstream.Close() })
	signed := map[string]bool{}
	for _, n := range secure {
		signed[n] = true
	}
	c := &dns.Client{Timeout: 2 * time.Second}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		resp, _, err := c.Exchange(req, upstream.Addr)
		if err != nil {
			return
		}
		ad := len(req.Question) == 1 && signed[strings.ToLower(req.Question[0].Name)]
		for _, rr := range resp.Answer {
			ad = ad && signed[strings.ToLower(rr.Header().Name)]
		}
		resp.AuthenticatedData = ad
		_ = w.WriteMsg(resp)
	})
	srv := &dns.Server{Addr: "127.0.0.1:0", Net: "udp", Handler: h}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go func() { _ = srv.ListenAndServe() }()
	<-started
	t.Cleanup(func() { _ = srv.Shutdown() })
	return srv.PacketConn.LocalAddr().String()
}

// TestPlanAddressSecurity: each candidate says whether its address came
// with the AD bit (KumoMTA's make_egress_path/enable_dane page): a host
// in a signed zone is secure, one in an unsigned zone is not, a signed
// CNAME whose target lands in an unsigned zone is secure (the TLSA records
// at the alias authenticate the peer), an unsigned alias is not; mx_list
// hosts are judged the same way, and addresses given in the configuration
// never are. The selection is secure for a validated MX answer only.
func TestPlanAddressSecurity(t *testing.T) {
	addr := validating(t, `
example.com.          MX 10 mx.signed.test.
example.com.          MX 20 mx.unsigned.test.
example.com.          MX 30 alias.signed.test.
example.com.          MX 40 alias.unsigned.test.
insecure.example.     MX 10 mx.signed.test.
mx.signed.test.       A 10.0.0.1
mx.unsigned.test.     A 10.0.0.2
alias.signed.test.    CNAME target.unsigned.test.
target.unsigned.test. A 10.0.0.3
alias.unsigned.test.  CNAME target2.unsigned.test.
target2.unsigned.test. A 10.0.0.4
`, "example.com.", "mx.signed.test.", "alias.signed.test.")
	r, err := mx.NewResolver([]string{addr}, mx.Options{Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"10.0.0.1": true, "10.0.0.2": false, "10.0.0.3": true, "10.0.0.4": false}
	plan, err := r.Plan(t.Context(), "example.com", nil, 25, "")
	if err != nil {
		t.Fatal(err)
	}
	if !plan.SecureSelection() {
		t.Error("validated MX answer: selection not secure")
	}
	if len(plan.Candidates) != len(want) {
		t.Fatalf("candidates %v", plan.Candidates)
	}
	for _, c := range plan.Candidates {
		if c.Secure != want[c.Addr.String()] {
			t.Errorf("%s (%s): secure %v, want %v", c.Name, c.Addr, c.Secure, want[c.Addr.String()])
		}
	}
	insecure, err := r.Plan(t.Context(), "insecure.example", nil, 25, "")
	if err != nil {
		t.Fatal(err)
	}
	if insecure.SecureSelection() {
		t.Error("MX answer without AD: selection secure")
	}

	list, err := r.Plan(t.Context(), "example.com", []config.MXListEntry{
		{Name: "mx.signed.test"}, {Name: "mx.unsigned.test"}, {Name: "alias.signed.test:2525"},
		{Name: "relay", Addr: "10.9.9.9"}, {Name: "[10.0.0.7]"},
	}, 25, "")
	if err != nil {
		t.Fatal(err)
	}
	want = map[string]bool{"10.0.0.1": true, "10.0.0.2": false, "10.0.0.3": true, "10.9.9.9": false, "10.0.0.7": false}
	if len(list.Candidates) != len(want) {
		t.Fatalf("mx_list candidates %v", list.Candidates)
	}
	for _, c := range list.Candidates {
		if c.Secure != want[c.Addr.String()] {
			t.Errorf("mx_list %s (%s): secure %v, want %v", c.Name, c.Addr, c.Secure, want[c.Addr.String()])
		}
	}
	if list.SecureSelection() {
		t.Error("mx_list trusted without treat_mx_list_as_secure")
	}
	list.TreatListAsSecure = true
	if !list.SecureSelection() {
		t.Error("mx_list with treat_mx_list_as_secure not trusted")
	}
}
