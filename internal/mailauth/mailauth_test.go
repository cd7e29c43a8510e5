package mailauth_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/kumogo/kumogo/internal/dnszone"
	"github.com/kumogo/kumogo/internal/mailauth"
	"github.com/kumogo/kumogo/queue/egress/mx"
)

// failing answers names containing "servfail" with a temporary error and
// passes everything else to the real resolver.
type failing struct{ mailauth.Resolver }

var errServfail = errors.New("server answered SERVFAIL")

func (f failing) LookupTXT(ctx context.Context, name string) ([]string, error) {
	if strings.Contains(name, "servfail") {
		return nil, errServfail
	}
	return f.Resolver.LookupTXT(ctx, name)
}

func (f failing) LookupIP(ctx context.Context, name string) ([]netip.Addr, error) {
	if strings.Contains(name, "servfail") {
		return nil, errServfail
	}
	return f.Resolver.LookupIP(ctx, name)
}

// zoneResolver serves zone through kumogo's resolver (queue/egress/mx)
// from an in-process DNS server on loopback.
func zoneResolver(t testing.TB, zone string) mailauth.Resolver {
	t.Helper()
	z, err := dnszone.Parse([]string{zone})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := dnszone.Serve(z)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	r, err := mx.NewResolver([]string{srv.Addr}, mx.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return failing{r.AuthResolver()}
}

const spfZone = `$ORIGIN test.
pass.test.       TXT "v=spf1 ip4:192.0.2.0/24 -all"
fail.test.       TXT "v=spf1 -all"
softfail.test.   TXT "v=spf1 ~all"
neutral.test.    TXT "v=spf1 ?all"
norecord.test.   TXT "some other text"
badmech.test.    TXT "v=spf1 bogus:x -all"
twice.test.      TXT "v=spf1 -all"
twice.test.      TXT "v=spf1 +all"
incl.test.       TXT "v=spf1 include:pass.test -all"
incltemp.test.   TXT "v=spf1 include:servfail.test -all"
mx.test.         TXT "v=spf1 mx -all"
mx.test.         MX 10 mail.mx.test.
mail.mx.test.    A 198.51.100.7
a.test.          TXT "v=spf1 a:host.a.test ~all"
host.a.test.     A 203.0.113.9
loop.test.       TXT "v=spf1 include:loop.test -all"
void.test.       TXT "v=spf1 a:n1.void.test a:n2.void.test a:n3.void.test -all"
`

func TestCheckSPF(t *testing.T) {
	r := zoneResolver(t, spfZone)
	ctx := context.Background()
	ip := netip.MustParseAddr("192.0.2.10")
	for _, c := range []struct {
		domain, ip, want, reason string
	}{
		{"pass.test", "", "pass", "matched 'ip' directive"},
		{"pass.test", "10.0.0.1", "fail", "matched 'all' directive"},
		{"fail.test", "", "fail", "matched 'all' directive"},
		{"softfail.test", "", "softfail", "matched 'all' directive"},
		{"neutral.test", "", "neutral", "matched 'all' directive"},
		{"norecord.test", "", "none", "no SPF records found for norecord.test"},
		{"nxdomain.test", "", "none", "no SPF records found for nxdomain.test"},
		{"servfail.test", "", "temperror", "DNS lookup of servfail.test failed"},
		{"incltemp.test", "", "temperror", ""},
		{"badmech.test", "", "permerror", ""},
		{"twice.test", "", "permerror", ""},
		{"loop.test", "", "permerror", ""},
		{"void.test", "", "permerror", ""},
		{"incl.test", "", "pass", "matched 'ip' directive"},
		{"mx.test", "198.51.100.7", "pass", "matched 'mx' directive"},
		{"mx.test", "", "fail", ""},
		{"a.test", "203.0.113.9", "pass", "matched 'a' directive"},
		{"a.test", "", "softfail", ""},
	} {
		addr := ip
		if c.ip != "" {
			addr = netip.MustParseAddr(c.ip)
		}
		disp, res := mailauth.CheckSPF(ctx, r, mailauth.SPFQuery{IP: addr, Sender: "user@" + c.domain, HELO: "client.example"})
		if disp != c.want || res.Result != c.want || res.Method != "spf" || !strings.Contains(res.Reason, c.reason) {
			t.Errorf("%s from %s: %s %+v, want %s (%q)", c.domain, addr, disp, res, c.want, c.reason)
		}
		if res.Props["smtp.mailfrom"] != "user@"+c.domain || res.Props["smtp.helo"] != "client.example" {
			t.Errorf("%s: props %v", c.domain, res.Props)
		}
	}
	// the HELO identity: postmaster@domain, no smtp.mailfrom
	disp, res := mailauth.CheckSPF(ctx, r, mailauth.SPFQuery{IP: ip, Domain: "pass.test", HELO: "pass.test"})
	if disp != "pass" || res.Props["smtp.mailfrom"] != "" || res.Props["smtp.helo"] != "pass.test" {
		t.Errorf("helo identity: %s %+v", disp, res)
	}
}

func TestFormatHeader(t *testing.T) {
	got := mailauth.FormatHeader("mx.example.com", []mailauth.Result{
		{Method: "dkim", Result: "pass", Props: map[string]string{"header.d": "github.com", "header.a": "rsa-sha256", "header.i": "@github.com"}},
		{Method: "spf", Result: "none", Reason: "no SPF records found for example.com", Props: map[string]string{"smtp.mailfrom": "sender@example.com"}},
		{Method: "auth", MethodVersion: 1, Result: "pass", Props: map[string]string{"smtp.auth": `we"ird user`}},
	})
	want := "mx.example.com;\r\n dkim=pass\r\n header.a=rsa-sha256\r\n header.d=github.com\r\n header.i=@github.com;" +
		"\r\n spf=none reason=\"no SPF records found for example.com\"\r\n smtp.mailfrom=sender@example.com;" +
		"\r\n auth/1=pass\r\n smtp.auth=\"we\\\"ird user\""
	if got != want {
		t.Errorf("got\n%q\nwant\n%q", got, want)
	}
	if got := mailauth.FormatHeader("h", nil); got != "h; none" {
		t.Errorf("no results: %q", got)
	}
}

// dkimKey makes an RSA key and its DNS TXT record.
func dkimKey(t testing.TB) (*rsa.PrivateKey, string) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	p := base64.StdEncoding.EncodeToString(pub)
	// TXT strings are at most 255 bytes: split
	var parts []string
	rec := "v=DKIM1; k=rsa; p=" + p
	for len(rec) > 200 {
		parts = append(parts, `"`+rec[:200]+`"`)
		rec = rec[200:]
	}
	parts = append(parts, `"`+rec+`"`)
	return key, strings.Join(parts, " ")
}

func sign(t testing.TB, key *rsa.PrivateKey, domain, selector, msg string) string {
	t.Helper()
	var b bytes.Buffer
	err := dkim.Sign(&b, strings.NewReader(msg), &dkim.SignOptions{Domain: domain, Selector: selector, Signer: key,
		HeaderKeys: []string{"From", "Subject"}})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

const plainMsg = "From: a@example.com\r\nSubject: hi\r\n\r\nbody\r\n"

func TestVerifyDKIMAndDMARC(t *testing.T) {
	key, txt := dkimKey(t)
	other, _ := dkimKey(t)
	r := zoneResolver(t, `$ORIGIN example.com.
s1._domainkey      TXT `+txt+`
revoked._domainkey TXT "v=DKIM1; p="
_dmarc             TXT "v=DMARC1; p=reject; sp=quarantine; adkim=r; aspf=s"
@                  TXT "v=spf1 ip4:192.0.2.0/24 -all"
$ORIGIN other.org.
s1._domainkey      TXT `+txt+`
_dmarc             TXT "v=DMARC1; p=quarantine; adkim=s"
$ORIGIN bad.org.
_dmarc             TXT "v=DMARC1; p=bogus"
`)
	ctx := context.Background()
	signed := sign(t, key, "example.com", "s1", plainMsg)

	res := mailauth.VerifyDKIM(ctx, r, []byte(signed))
	if len(res) != 1 || res[0].Result != "pass" || res[0].Props["header.d"] != "example.com" ||
		res[0].Props["header.s"] != "s1" || res[0].Props["header.a"] != "rsa-sha256" || len(res[0].Props["header.b"]) != 8 {
		t.Fatalf("pass: %+v", res)
	}
	for _, c := range []struct{ name, msg, want string }{
		{"unsigned", plainMsg, ""},
		{"tampered body", strings.Replace(signed, "body", "bodY", 1), "fail"},
		{"wrong key", sign(t, other, "example.com", "s1", plainMsg), "fail"},
		{"no key", sign(t, key, "example.com", "nokey", plainMsg), "permerror"},
		{"revoked", sign(t, key, "example.com", "revoked", plainMsg), "permerror"},
		{"key dns failure", sign(t, key, "servfail.example.com", "s1", strings.Replace(plainMsg, "example.com", "servfail.example.com", 1)), "temperror"},
		{"bare LF", strings.ReplaceAll(signed, "\r\n", "\n"), "permerror"},
	} {
		res := mailauth.VerifyDKIM(ctx, r, []byte(c.msg))
		if c.want == "" {
			if len(res) != 0 {
				t.Errorf("%s: %+v", c.name, res)
			}
			continue
		}
		if len(res) != 1 || res[0].Result != c.want || res[0].Method != "dkim" {
			t.Errorf("%s: %+v, want %s", c.name, res, c.want)
		}
	}
	two := sign(t, key, "other.org", "s1", signed)
	if res := mailauth.VerifyDKIM(ctx, r, []byte(two)); len(res) != 2 || res[0].Props["header.d"] != "other.org" || res[1].Props["header.d"] != "example.com" ||
		res[0].Result != "pass" || res[1].Result != "pass" {
		t.Errorf("two signatures: %+v", res)
	}

	dkimPass := mailauth.VerifyDKIM(ctx, r, []byte(signed))
	spfPass := mailauth.Result{Method: "spf", Result: "pass", Props: map[string]string{"smtp.mailfrom": "bounce@example.com"}}
	spfSub := mailauth.Result{Method: "spf", Result: "pass", Props: map[string]string{"smtp.mailfrom": "bounce@mail.example.com"}}
	spfFail := mailauth.Result{Method: "spf", Result: "fail", Props: map[string]string{"smtp.mailfrom": "bounce@example.com"}}
	for _, c := range []struct {
		name     string
		q        mailauth.DMARCQuery
		disp, rs string
		policy   string
	}{
		{"dkim aligned", mailauth.DMARCQuery{FromDomain: "example.com", DKIM: dkimPass, SPF: spfFail}, "Pass", "pass", ""},
		{"dkim relaxed subdomain", mailauth.DMARCQuery{FromDomain: "news.example.com", DKIM: dkimPass, SPF: spfFail}, "Pass", "pass", ""},
		{"spf aligned", mailauth.DMARCQuery{FromDomain: "example.com", SPF: spfPass}, "Pass", "pass", ""},
		{"spf strict misaligned", mailauth.DMARCQuery{FromDomain: "example.com", SPF: spfSub}, "Reject", "fail", "reject"},
		{"nothing aligned", mailauth.DMARCQuery{FromDomain: "example.com", SPF: spfFail}, "Reject", "fail", "reject"},
		{"subdomain policy", mailauth.DMARCQuery{FromDomain: "news.example.com", SPF: spfFail}, "Quarantine", "fail", "quarantine"},
		{"dkim strict", mailauth.DMARCQuery{FromDomain: "sub.other.org", DKIM: []mailauth.Result{{Method: "dkim", Result: "pass", Props: map[string]string{"header.d": "other.org"}}}}, "Quarantine", "fail", "quarantine"},
		{"failed dkim does not align", mailauth.DMARCQuery{FromDomain: "example.com", DKIM: []mailauth.Result{{Method: "dkim", Result: "fail", Props: map[string]string{"header.d": "example.com"}}}}, "Reject", "fail", "reject"},
		{"no record", mailauth.DMARCQuery{FromDomain: "norecord.net", DKIM: dkimPass}, "None", "none", ""},
		{"dns failure", mailauth.DMARCQuery{FromDomain: "servfail.net", DKIM: dkimPass}, "TempError", "temperror", ""},
		{"bad record", mailauth.DMARCQuery{FromDomain: "bad.org"}, "PermError", "permerror", ""},
	} {
		disp, res := mailauth.CheckDMARC(ctx, r, c.q)
		if disp != c.disp || res.Result != c.rs || res.Method != "dmarc" || res.Props["policy.published-domain-policy"] != c.policy {
			t.Errorf("%s: %s %+v, want %s %s", c.name, disp, res, c.disp, c.rs)
		}
	}
}

func TestOrganizationalDomain(t *testing.T) {
	for in, want := range map[string]string{"a.b.example.co.uk": "example.co.uk", "Mail.Example.com.": "example.com", "com": "com"} {
		if got := mailauth.OrganizationalDomain(in); got != want {
			t.Errorf("%s: %s", in, got)
		}
	}
}
