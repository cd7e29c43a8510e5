package mailauth_test

import (
	"bytes"
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/kumogo/kumogo/internal/mailauth"
)

// BenchmarkAuthWarm is DKIM verification (one RSA-2048 signature), SPF
// and DMARC of one message with kumogo's resolver cache warm: the cost
// mail_auth.check adds per message, without the Lua around it.
func BenchmarkAuthWarm(b *testing.B) {
	key, txt := dkimKey(b)
	r := zoneResolver(b, `$ORIGIN example.com.
s1._domainkey TXT `+txt+`
_dmarc        TXT "v=DMARC1; p=reject"
@             TXT "v=spf1 ip4:192.0.2.0/24 include:_spf.example.com -all"
_spf          TXT "v=spf1 ip4:198.51.100.0/24 -all"
`)
	msg := []byte(sign(b, key, "example.com", "s1", plainMsg+"some more body text\r\n"))
	ctx := context.Background()
	ip := netip.MustParseAddr("198.51.100.20")
	run := func() string {
		dkim := mailauth.VerifyDKIM(ctx, r, msg)
		_, spf := mailauth.CheckSPF(ctx, r, mailauth.SPFQuery{IP: ip, Sender: "bounce@example.com", HELO: "mta.example.com"})
		disp, _ := mailauth.CheckDMARC(ctx, r, mailauth.DMARCQuery{FromDomain: "example.com", DKIM: dkim, SPF: spf})
		return disp
	}
	if d := run(); d != "Pass" { // warms the cache
		b.Fatalf("disposition %s", d)
	}
	b.Run("all", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			run()
		}
	})
	b.Run("dkim", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			mailauth.VerifyDKIM(ctx, r, msg)
		}
	})
	// a 100 KB body of text lines, relaxed/relaxed, as bench/mailauth.sh
	// sends: the body hash is most of the cost
	var body strings.Builder
	for body.Len() < 100*1024 {
		body.WriteString("The quick brown fox jumps over the lazy dog, again and again and again.\r\n")
	}
	var big bytes.Buffer
	if err := dkim.Sign(&big, strings.NewReader(plainMsg+body.String()), &dkim.SignOptions{Domain: "example.com", Selector: "s1", Signer: key,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed, BodyCanonicalization: dkim.CanonicalizationRelaxed,
		HeaderKeys: []string{"From", "Subject"}}); err != nil {
		b.Fatal(err)
	}
	if res := mailauth.VerifyDKIM(ctx, r, big.Bytes()); len(res) != 1 || res[0].Result != "pass" {
		b.Fatalf("100 KB message: %+v", res)
	}
	b.Run("dkim-100KB", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(big.Len()))
		for i := 0; i < b.N; i++ {
			mailauth.VerifyDKIM(ctx, r, big.Bytes())
		}
	})
	b.Run("spf+dmarc", func(b *testing.B) {
		dkim := mailauth.VerifyDKIM(ctx, r, msg)
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			_, spf := mailauth.CheckSPF(ctx, r, mailauth.SPFQuery{IP: ip, Sender: "bounce@example.com", HELO: "mta.example.com"})
			mailauth.CheckDMARC(ctx, r, mailauth.DMARCQuery{FromDomain: "example.com", DKIM: dkim, SPF: spf})
		}
	})
}
