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

// DANE for SMTP (RFC 7672), per candidate host, with KumoMTA's outcomes
// (its make_egress_path/enable_dane page, and the result labels of its
// dane_result_count metric): with enable_dane, a trusted host selection
// (a DNSSEC-validated MX answer, or an mx_list with
// treat_mx_list_as_secure) and DNSSEC-validated addresses of the host
// (mx/dnssec.go), the host's TLSA records decide.
//   - usable DANE-TA(2)/DANE-EE(3) records ("ok"): TLS Required, the
//     certificate checked against the records instead of PKIX, and
//     MTA-STS not consulted (DANE wins);
//   - records, none usable ("unusable"): TLS RequiredInsecure; MTA-STS
//     may add authentication but never relax the mandatory STARTTLS;
//   - securely no records ("not_applicable"), or an MX, address or TLSA
//     answer without the AD bit ("insecure_chain"): the configured TLS,
//     MTA-STS may apply;
//   - a failed TLSA lookup ("tempfail"): that host is not tried (a
//     TransientFailure if no other host answers), never plaintext.
// The records travel to the handshake in the context.

// DANE results, the values of dane_result_count's result label.
const (
	DANEOK            = "ok"
	DANEUnusable      = "unusable"
	DANENotApplicable = "not_applicable"
	DANEInsecureChain = "insecure_chain"
	DANETempFail      = "tempfail"
)

// TLSASource gives TLSA records and whether they are DNSSEC-validated;
// *mx.Resolver is one.
type TLSASource interface {
	LookupTLSA(ctx context.Context, host string, port int) ([]mx.TLSA, bool, error)
}

type daneKey struct{}

// tlsPolicy is the TLS of one candidate: DANE first, then the MTA-STS
// mode found during resolution, as far as DANE lets it apply.
func (d *Dialer) tlsPolicy(ctx context.Context, plan *mx.ConnectionPlan, c mx.Candidate, p *config.EgressPath, src *config.EgressSource) (context.Context, *config.EgressPath, error) {
	result, recs, err := d.dane(ctx, plan, c, p, src)
	if result != "" && d.DANEResult != nil {
		d.DANEResult(result)
	}
	switch result {
	case DANETempFail:
		return ctx, p, err
	case DANEOK:
		pinned := *p
		pinned.EnableTLS = TLSRequired
		return context.WithValue(ctx, daneKey{}, recs), &pinned, nil
	case DANEUnusable:
		mandatory := *p
		mandatory.EnableTLS = TLSRequiredInsecure
		p = &mandatory
	}
	return ctx, stsPosture(plan.STSMode, p), nil
}

// dane looks up the TLSA records of candidate c when the path has
// enable_dane; result is "" when DANE is off.
func (d *Dialer) dane(ctx context.Context, plan *mx.ConnectionPlan, c mx.Candidate, p *config.EgressPath, src *config.EgressSource) (string, []mx.TLSA, error) {
	if d.TLSA == nil || !p.EnableDANE {
		return "", nil, nil
	}
	if !plan.SecureSelection() || !c.Secure {
		return DANEInsecureChain, nil, nil
	}
	host := strings.TrimSuffix(c.Name, ".")
	all, secure, err := d.TLSA.LookupTLSA(ctx, host, targetPort(c, p, src))
	switch {
	case err != nil:
		return DANETempFail, nil, &smtpreply.Error{Response: smtpreply.Response{Code: 400,
			Content: "KumoMTA internal: DANE: TLSA lookup for " + host + " could not be securely resolved: " + err.Error()}, Err: err}
	case !secure:
		return DANEInsecureChain, nil, nil
	case len(all) == 0:
		return DANENotApplicable, nil, nil
	}
	var usable []mx.TLSA
	for _, r := range all {
		if (r.Usage == 2 || r.Usage == 3) && r.Selector <= 1 && r.MatchingType <= 2 {
			usable = append(usable, r)
		}
	}
	if len(usable) == 0 {
		return DANEUnusable, nil, nil
	}
	return DANEOK, usable, nil
}

// daneRecords returns the TLSA records that verify the certificate of the
// candidate being dialled, if any.
func daneRecords(ctx context.Context) []mx.TLSA {
	recs, _ := ctx.Value(daneKey{}).([]mx.TLSA)
	return recs
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
