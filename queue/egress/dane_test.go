package egress

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"strings"
	"testing"

	"github.com/kumogo/kumogo/internal/dnszone"
	"github.com/kumogo/kumogo/queue/egress/mx"
)

// TestDANE: TLSA records served with the AD bit by a test DNS server
// (through kumogo's resolver) make TLS required and replace PKIX: an
// untrusted certificate that matches a DANE-EE record is accepted, one
// that does not is refused, a peer without STARTTLS is never used in
// plaintext; without the AD bit, or without enable_dane, the records are
// ignored.
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
			Candidates: []mx.Candidate{p.candidate()}}
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
