package mx_test

import (
	"context"
	"testing"

	"github.com/kumogo/kumogo/internal/dnszone"
	"github.com/kumogo/kumogo/queue/egress/mx"
)

// TestSecureAnswersAndTLSA: the AD bit of the server's answers reaches
// MXResult.IsSecure and LookupTLSA's secure flag; TLSA records are decoded.
func TestSecureAnswersAndTLSA(t *testing.T) {
	for _, ad := range []bool{true, false} {
		z, err := dnszone.Parse([]string{`$ORIGIN example.com.
@                 MX 10 mx
mx                A 127.0.0.1
_25._tcp.mx       TLSA 3 1 1 ABCDEF0123
`})
		if err != nil {
			t.Fatal(err)
		}
		z.AD = ad
		srv, err := dnszone.Serve(z)
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		r, _ := mx.NewResolver([]string{srv.Addr}, mx.Options{})
		res, err := r.LookupMX(context.Background(), "example.com")
		if err != nil || res.IsSecure != ad {
			t.Fatalf("AD %v: MX %+v %v", ad, res, err)
		}
		recs, secure, err := r.LookupTLSA(context.Background(), "mx.example.com", 25)
		if err != nil || secure != ad || len(recs) != 1 || recs[0].Usage != 3 || recs[0].Selector != 1 || recs[0].MatchingType != 1 ||
			len(recs[0].Data) != 5 || recs[0].Data[0] != 0xab {
			t.Fatalf("AD %v: TLSA %+v %v %v", ad, recs, secure, err)
		}
		if recs, _, err := r.LookupTLSA(context.Background(), "mx.example.com", 587); err != nil || len(recs) != 0 {
			t.Fatalf("no TLSA: %+v %v", recs, err)
		}
	}
}
