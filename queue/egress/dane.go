package egress

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/smtpreply"
	"github.com/kumogo/kumogo/queue/egress/mx"
)

// DANE for SMTP (RFC 7672): with enable_dane, a candidate whose MX answer
// and TLSA records both came with the AD bit (DNSSEC-validated) is
// reached over TLS only, and its certificate must match a DANE-EE (usage
// 3) or DANE-TA (usage 2) record; PKIX usages (0, 1) are unusable for
// SMTP. The records travel to the handshake in the context.

// TLSASource gives TLSA records and whether they are DNSSEC-validated;
// *mx.Resolver is one.
type TLSASource interface {
	LookupTLSA(ctx context.Context, host string, port int) ([]mx.TLSA, bool, error)
}

type daneKey struct{}

// daneRecords are the usable TLSA records of each candidate host name.
type daneRecords map[string][]mx.TLSA

// applyDANE looks up the TLSA records of the plan's hosts when the path
// has enable_dane and the MX answer was secure. Hosts with usable secure
// records make TLS Required and are verified by them; a DNS failure of a
// TLSA lookup of a secure domain is a TransientFailure (RFC 7672 section
// 2.2), never a fallback to plaintext.
func (d *Dialer) applyDANE(ctx context.Context, plan *mx.ConnectionPlan, p *config.EgressPath) (context.Context, *config.EgressPath, error) {
	if d.TLSA == nil || !p.EnableDANE || plan.MX == nil || !plan.MX.IsSecure {
		return ctx, p, nil
	}
	recs := daneRecords{}
	for _, c := range plan.Candidates {
		if _, done := recs[c.Name]; done {
			continue
		}
		port := c.Port
		if port == 0 {
			port = p.SMTPPort
		}
		all, secure, err := d.TLSA.LookupTLSA(ctx, strings.TrimSuffix(c.Name, "."), port)
		if err != nil {
			return ctx, p, &smtpreply.Error{Response: smtpreply.Response{Code: 400,
				Content: "KumoMTA internal: DANE: TLSA lookup for " + strings.TrimSuffix(c.Name, ".") + " failed: " + err.Error()}, Err: err}
		}
		var usable []mx.TLSA
		if secure {
			for _, r := range all {
				if (r.Usage == 2 || r.Usage == 3) && r.Selector <= 1 && r.MatchingType <= 2 {
					usable = append(usable, r)
				}
			}
		}
		recs[c.Name] = usable
	}
	found := false
	for _, r := range recs {
		found = found || len(r) > 0
	}
	if !found {
		return ctx, p, nil
	}
	required := *p
	required.EnableTLS = TLSRequired
	return context.WithValue(ctx, daneKey{}, recs), &required, nil
}

// daneFor returns the TLSA records that verify host's certificate, if any.
func daneFor(ctx context.Context, host string) []mx.TLSA {
	recs, _ := ctx.Value(daneKey{}).(daneRecords)
	return recs[host]
}

// verifyDANE checks the presented chain against the records: DANE-EE
// matches the leaf (name and expiry are not checked, RFC 7672 section
// 3.1.1); DANE-TA matches a certificate of the chain that the leaf, for
// serverName, chains up to.
func verifyDANE(cs tls.ConnectionState, recs []mx.TLSA, serverName string) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("DANE: no certificate presented")
	}
	leaf := cs.PeerCertificates[0]
	for _, r := range recs {
		if r.Usage == 3 && tlsaMatches(r, leaf) {
			return nil
		}
	}
	for _, r := range recs {
		if r.Usage != 2 {
			continue
		}
		for _, ta := range cs.PeerCertificates[1:] {
			if !tlsaMatches(r, ta) {
				continue
			}
			roots := x509.NewCertPool()
			roots.AddCert(ta)
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: serverName}); err == nil {
				return nil
			}
		}
	}
	return fmt.Errorf("DANE: the certificate of %s matches none of its %d TLSA records", serverName, len(recs))
}

func tlsaMatches(r mx.TLSA, cert *x509.Certificate) bool {
	data := cert.Raw
	if r.Selector == 1 {
		data = cert.RawSubjectPublicKeyInfo
	}
	switch r.MatchingType {
	case 1:
		sum := sha256.Sum256(data)
		data = sum[:]
	case 2:
		sum := sha512.Sum512(data)
		data = sum[:]
	}
	return bytes.Equal(data, r.Data)
}
