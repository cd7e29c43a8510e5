package egress

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"strings"
	"testing"

	"github.com/kumogo/kumogo/internal/dnszone"
	"github.com/kumogo/kumogo/queue/egress/mx"
)

// TestDANE: TLSA records served with the AD bit by a test DNS server
// (through kumogo's resolver) make TLS required and replace PKIX: an
// untrusted certificate that matches a DANE-EE record is accepted, one
// that does not is refused, a peer without STARTTLS is never used in
// plaintext; without the AD bit on the MX answer, the host's addresses or
// the TLSA records, for an mx_list without treat_mx_list_as_secure, or
// without enable_dane, the records are ignored.
func TestDANE(t *testing.T) {
	srvTLS, _ := selfSigned(t, "fake.example")
	cert, err := x509.ParseCertificate(srvTLS.Certificates[0].Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	spki := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	full := sha256.Sum256(cert.Raw)
	withTLS := startPeer(t, peerOpts{ext: []string{"PIPELINING", "STARTTLS"}, tls: srvTLS})
	plain := startPeer(t, peerOpts{ext: []string{"PIPELINING"}})

	resolver := func(ad bool, tlsa string) *mx.Resolver {
		port := withTLS.candidate().Port
		z, err := dnszone.Parse([]string{"_" + itoa(port) + "._tcp.fake.example. TLSA " + tlsa + "\n" +
			"_" + itoa(plain.candidate().Port) + "._tcp.fake.example. TLSA " + tlsa + "\n"})
		if err != nil {
			t.Fatal(err)
		}
		z.AD = ad
		srv, err := dnszone.Serve(z)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Close() })
		r, err := mx.NewResolver([]string{srv.Addr}, mx.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	hex := func(b [32]byte) string { return hexString(b[:]) }
	planFor := func(p *fakePeer, secure bool) *mx.ConnectionPlan {
		return &mx.ConnectionPlan{Domain: "example.com", Site: "s", MX: &mx.MXResult{DomainName: "example.com.", IsSecure: secure},
			Candidates: []mx.Candidate{p.secureCandidate()}}
	}
	// mx_list plans: DANE applies only with treat_mx_list_as_secure
	listPlan := func(p *fakePeer, trusted bool) *mx.ConnectionPlan {
		return &mx.ConnectionPlan{Domain: "example.com", Site: "mx_list:fake.example",
			Candidates: []mx.Candidate{p.secureCandidate()}, TreatListAsSecure: trusted}
	}
	path := testPath()
	path.EnableDANE = true
	path.EnableTLS = TLSOpportunistic
	ctx := context.Background()

	for _, rec := range []string{"3 1 1 " + hex(spki), "3 0 1 " + hex(full)} {
		d := Dialer{TLSA: resolver(true, rec)}
		s, err := d.Connect(ctx, planFor(withTLS, true), path, nil, "c")
		if err != nil || s.TLS() == nil {
			t.Fatalf("%s: matching DANE-EE record refused: %v", rec, err)
		}
		s.Close()
	}
	wrong := Dialer{TLSA: resolver(true, "3 1 1 "+strings.Repeat("AB", 32))}
	if _, err := wrong.Connect(ctx, planFor(withTLS, true), path, nil, "c"); err == nil {
		t.Fatal("mismatching certificate accepted")
	} else if !strings.Contains(err.Error(), "matches none of its 1 TLSA records") {
		t.Errorf("mismatch error: %v", err)
	}
	good := Dialer{TLSA: resolver(true, "3 1 1 "+hex(spki))}
	if _, err := good.Connect(ctx, planFor(plain, true), path, nil, "c"); err == nil || !strings.Contains(err.Error(), "STARTTLS is not advertised") {
		t.Fatalf("plaintext with TLSA records: %v", err)
	}
	// not secure: no DANE (the untrusted certificate fails PKIX under
	// Opportunistic, the plaintext peer is used as is)
	insecure := Dialer{TLSA: resolver(false, "3 1 1 "+hex(spki))}
	if s, err := insecure.Connect(ctx, planFor(plain, true), path, nil, "c"); err != nil {
		t.Fatalf("TLSA without AD: %v", err)
	} else {
		s.Close()
	}
	if s, err := good.Connect(ctx, planFor(plain, false), path, nil, "c"); err != nil {
		t.Fatalf("insecure MX answer: %v", err)
	} else {
		s.Close()
	}
	// a validated MX answer, but the host's addresses came without the
	// AD bit: no DANE either
	insecureAddr := planFor(plain, true)
	insecureAddr.Candidates[0].Secure = false
	if s, err := good.Connect(ctx, insecureAddr, path, nil, "c"); err != nil {
		t.Fatalf("insecure address answer: %v", err)
	} else {
		s.Close()
	}
	// an mx_list: DANE only when the queue trusts the list
	if s, err := good.Connect(ctx, listPlan(plain, false), path, nil, "c"); err != nil {
		t.Fatalf("untrusted mx_list: %v", err)
	} else {
		s.Close()
	}
	if _, err := good.Connect(ctx, listPlan(plain, true), path, nil, "c"); err == nil || !strings.Contains(err.Error(), "STARTTLS is not advertised") {
		t.Fatalf("plaintext to a trusted mx_list host with TLSA records: %v", err)
	}
	if s, err := good.Connect(ctx, listPlan(withTLS, true), path, nil, "c"); err != nil || s.TLS() == nil {
		t.Fatalf("trusted mx_list host with a matching DANE-EE record: %v", err)
	} else {
		s.Close()
	}
	if _, err := wrong.Connect(ctx, listPlan(withTLS, true), path, nil, "c"); err == nil || !strings.Contains(err.Error(), "matches none of its 1 TLSA records") {
		t.Fatalf("trusted mx_list host with a mismatching record: %v", err)
	}
	off := testPath()
	off.EnableDANE = false
	if s, err := good.Connect(ctx, planFor(plain, true), off, nil, "c"); err != nil {
		t.Fatalf("enable_dane=false: %v", err)
	} else {
		s.Close()
	}
}

func hexString(b []byte) string {
	const digits = "0123456789ABCDEF"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

// fakeTLSA answers every TLSA lookup the same way.
type fakeTLSA struct {
	recs   []mx.TLSA
	secure bool
	err    error
}

func (f fakeTLSA) LookupTLSA(context.Context, string, int) ([]mx.TLSA, bool, error) {
	return f.recs, f.secure, f.err
}

// TestDANEOverridesMTASTS: DANE's outcomes combined with an MTA-STS mode
// found during resolution (KumoMTA's make_egress_path/enable_dane and
// enable_mta_sts pages). Usable DNSSEC-validated TLSA records win over an
// enforce policy: the untrusted certificate that matches them is accepted
// (MTA-STS alone would refuse it), and one that does not match is refused
// naming DANE. Records that are all unusable require STARTTLS without
// checking the certificate, unless an enforce policy adds PKIX; testing
// mode never relaxes that STARTTLS. A failed TLSA lookup defers, naming
// DANE. Each decision is counted under its result.
func TestDANEOverridesMTASTS(t *testing.T) {
	srvTLS, _ := selfSigned(t, "fake.example")
	cert, err := x509.ParseCertificate(srvTLS.Certificates[0].Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	spki := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	withTLS := startPeer(t, peerOpts{ext: []string{"PIPELINING", "STARTTLS"}, tls: srvTLS})
	plain := startPeer(t, peerOpts{ext: []string{"PIPELINING"}})
	planFor := func(p *fakePeer, mode string) *mx.ConnectionPlan {
		return &mx.ConnectionPlan{Domain: "example.com", Site: "s", MX: &mx.MXResult{DomainName: "example.com.", IsSecure: true},
			Candidates: []mx.Candidate{p.secureCandidate()}, STSMode: mode}
	}
	path := testPath()
	path.EnableDANE = true
	path.EnableTLS = TLSOpportunistic
	ctx := t.Context()
	counts := map[string]int{}
	dialer := func(src TLSASource) Dialer {
		return Dialer{TLSA: src, DANEResult: func(r string) { counts[r]++ }} // system roots: the certificate is untrusted
	}
	ee := dialer(fakeTLSA{secure: true, recs: []mx.TLSA{{Usage: 3, Selector: 1, MatchingType: 1, Data: spki[:]}}})
	wrong := dialer(fakeTLSA{secure: true, recs: []mx.TLSA{{Usage: 3, Selector: 1, MatchingType: 1, Data: make([]byte, 32)}}})
	unusable := dialer(fakeTLSA{secure: true, recs: []mx.TLSA{{Usage: 1, Selector: 1, MatchingType: 1, Data: spki[:]}}})
	failing := dialer(fakeTLSA{err: errors.New("SERVFAIL")})
	absent := dialer(fakeTLSA{secure: true})

	// DANE wins over enforce
	s, err := ee.Connect(ctx, planFor(withTLS, "enforce"), path, nil, "c")
	if err != nil || s.TLS() == nil {
		t.Fatalf("matching DANE-EE record under an enforce policy: %v", err)
	}
	s.Close()
	// without DANE the same enforce policy refuses that certificate
	if _, err := absent.Connect(ctx, planFor(withTLS, "enforce"), path, nil, "c"); err == nil {
		t.Fatal("enforce without TLSA records accepted an untrusted certificate")
	}
	if _, err := wrong.Connect(ctx, planFor(withTLS, "enforce"), path, nil, "c"); err == nil ||
		!strings.Contains(ResponseFor(err).Content, "DANE: the certificate of fake.example matches none of its 1 TLSA records") {
		t.Fatalf("mismatching certificate: %v", err)
	}
	// unusable records: STARTTLS required, certificate not checked...
	if s, err := unusable.Connect(ctx, planFor(withTLS, ""), path, nil, "c"); err != nil || s.TLS() == nil {
		t.Fatalf("unusable records: %v", err)
	} else {
		s.Close()
	}
	if _, err := unusable.Connect(ctx, planFor(plain, "testing"), path, nil, "c"); err == nil || !strings.Contains(err.Error(), "tls policy is RequiredInsecure but STARTTLS is not advertised") {
		t.Fatalf("unusable records, testing policy, plaintext peer: %v", err)
	}
	// ...and an enforce policy adds the PKIX check
	if _, err := unusable.Connect(ctx, planFor(withTLS, "enforce"), path, nil, "c"); err == nil {
		t.Fatal("unusable records with an enforce policy accepted an untrusted certificate")
	}
	if _, err := failing.Connect(ctx, planFor(plain, ""), path, nil, "c"); err == nil ||
		!strings.Contains(ResponseFor(err).Content, "DANE: TLSA lookup for fake.example could not be securely resolved: SERVFAIL") || ResponseFor(err).Code != 400 {
		t.Fatalf("failed TLSA lookup: %v", err)
	}
	if s, err := absent.Connect(ctx, planFor(plain, ""), path, nil, "c"); err != nil {
		t.Fatalf("securely absent records: %v", err)
	} else {
		s.Close()
	}
	insecure := planFor(plain, "")
	insecure.MX.IsSecure = false
	if s, err := failing.Connect(ctx, insecure, path, nil, "c"); err != nil {
		t.Fatalf("insecure MX answer: %v", err)
	} else {
		s.Close()
	}
	want := map[string]int{DANEOK: 2, DANEUnusable: 3, DANETempFail: 1, DANENotApplicable: 2, DANEInsecureChain: 1}
	for k, v := range want {
		if counts[k] != v {
			t.Errorf("dane results %v, want %v", counts, want)
			break
		}
	}
}
