package runtime

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/kumogo/kumogo/policies"
)

// benchMailAuthPolicy is bench/mailauth.lua's handler in process: with
// AUTH true it runs policy-extras.mail_auth's check (DKIM, SPF, iprev,
// DMARC, ARC, Authentication-Results) and refuses anything but pass.
const benchMailAuthPolicy = `
local kumo = require 'kumo'
local mail_auth = require 'policy-extras.mail_auth'
local auth = $AUTH
kumo.on('init', function()
  kumo.dns.configure_test_resolver { [[
$ORIGIN example.com.
@                3600 TXT "v=spf1 ip4:10.0.0.0/8 -all"
_dmarc           3600 TXT "v=DMARC1; p=reject"
bench._domainkey 3600 TXT $TXT
mx               3600 A   10.0.0.1
1.0.0.10.in-addr.arpa. 3600 PTR mx.example.com.
]] }
end)
local function first(list)
  return list and list[1] and list[1].result
end
kumo.on('smtp_server_message_received', function(msg)
  if auth then
    local r = mail_auth.check(msg)
    local dkim, spf, iprev, dmarc = first(r.dkim), r.spf.result, r.iprev.result, r.dmarc.result
    if dkim ~= 'pass' or spf ~= 'pass' or iprev ~= 'pass' or dmarc ~= 'pass' then
      kumo.reject(550, string.format('5.7.1 bench: dkim=%s spf=%s iprev=%s dmarc=%s', dkim, spf, iprev, dmarc))
    end
  end
  msg:set_meta('queue', 'null')
end)
`

// BenchmarkMailAuthCheck is the sink of bench/mailauth.sh in process: the
// same RSA-2048 relaxed/relaxed DKIM-signed 10 KB message through the
// plain handler and through mail_auth.check, interleaved (plain, auth,
// plain, auth, ...) so that both see the same machine load. A fresh
// message per iteration (the check adds a header); its construction is
// in both figures. cpu-ns/op is the process CPU per message.
func BenchmarkMailAuthCheck(b *testing.B) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		b.Fatal(err)
	}
	pub, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	txt := txtRecord("v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(pub))
	var body strings.Builder
	for body.Len() < 10*1024 {
		body.WriteString("The quick brown fox jumps over the lazy dog, again and again and again.\r\n")
	}
	raw := "From: bench@example.com\r\nTo: a@example.com\r\nSubject: bench\r\nMessage-ID: <1@example.com>\r\n" +
		"Date: Thu, 03 Dec 2026 17:00:00 +0000\r\n\r\n" + body.String()
	var signed bytes.Buffer
	if err := dkim.Sign(&signed, strings.NewReader(raw), &dkim.SignOptions{Domain: "example.com", Selector: "bench", Signer: key,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed, BodyCanonicalization: dkim.CanonicalizationRelaxed}); err != nil {
		b.Fatal(err)
	}
	data := signed.String()
	mk := func(auth string) *Runtime {
		src := strings.NewReplacer("$AUTH", auth, "$TXT", txt).Replace(benchMailAuthPolicy)
		return newRuntime(b, src, func(o *Options) { o.DNS = &resolverDNS{}; o.Modules = policies.Modules() })
	}
	rts := map[string]*Runtime{"plain": mk("false"), "auth": mk("true")}
	ctx := context.Background()
	run := func(b *testing.B, r *Runtime) {
		msg := testMessage(b, data, "a@example.com")
		msg.CopyConnMeta(newTestConn())
		if err := r.MessageReceived(ctx, msg, newTestConn()); err != nil {
			b.Fatal(err)
		}
	}
	for _, r := range rts { // warm: Lua states, the resolver cache
		for i := 0; i < 20; i++ {
			run(b, r)
		}
	}
	for pair := 0; pair < 3; pair++ {
		for _, name := range []string{"plain", "auth"} {
			b.Run(name, func(b *testing.B) {
				r := rts[name]
				b.ReportAllocs()
				cpu0 := processCPU()
				for i := 0; i < b.N; i++ {
					run(b, r)
				}
				b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
			})
		}
	}
}
