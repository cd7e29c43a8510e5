package main

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// dkimTestKey writes a PEM RSA key to dir and returns its path and the
// zone TXT data of its public half (split into character-strings).
func dkimTestKey(t *testing.T, dir string) (string, string) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "dkim.pem")
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	if err := os.WriteFile(path, pemKey, 0o600); err != nil {
		t.Fatal(err)
	}
	pub, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	rec := "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(pub)
	var parts []string
	for len(rec) > 200 {
		parts = append(parts, `"`+rec[:200]+`"`)
		rec = rec[200:]
	}
	return path, strings.Join(append(parts, `"`+rec+`"`), " ")
}

// pySignAndSend signs a message with dkimpy (an independent DKIM
// implementation, Debian's python3-dkim) and sends it with smtplib.
const pySignAndSend = `
import sys, smtplib, dkim
addr, keyfile, sign = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
msg = b"From: Sender <sender@example.com>\r\nTo: rcpt@dest.test\r\nSubject: auth test\r\n\r\nhello\r\n"
if sign:
    sig = dkim.sign(msg, b"s1", b"example.com", open(keyfile, "rb").read(), include_headers=[b"from", b"to", b"subject"])
    msg = sig + msg
host, port = addr.rsplit(":", 1)
s = smtplib.SMTP(host, int(port), local_hostname="client.auth.test")
s.sendmail("sender@example.com", ["rcpt@dest.test"], msg)
s.quit()
print("sent")
`

// TestMailAuthHelperEndToEnd: the daemon with a policy that calls
// policy-extras.mail_auth in smtp_server_message_received verifies a
// dkimpy signature, SPF, iprev and DMARC against the policy's test zone
// and ARC (none) and adds the Authentication-Results header.
func TestMailAuthHelperEndToEnd(t *testing.T) {
	dir := t.TempDir()
	keyPath, txt := dkimTestKey(t, dir)
	policy := spooledPolicy(t, dir, `
  kumo.start_esmtp_listener { listen = '127.0.0.1:0', hostname = 'mx.auth.test' }
  kumo.dns.configure_test_resolver {
    [[
$ORIGIN example.com.
@               TXT "v=spf1 ip4:127.0.0.0/8 -all"
s1._domainkey   TXT `+txt+`
_dmarc          TXT "v=DMARC1; p=reject"
$ORIGIN auth.test.
client          A 127.0.0.1
1.0.0.127.in-addr.arpa. PTR client.auth.test.
]],
  }`, `
local mail_auth = require 'policy-extras.mail_auth'
kumo.on('smtp_server_message_received', function(msg)
  local r = mail_auth.check(msg)
  kumo.log_info('DMARC ' .. r.dmarc.result .. ' DKIM ' .. r.dkim[1].result .. ' IPREV ' .. r.iprev.result)
  kumo.log_info('AR ' .. msg:get_first_named_header_value 'Authentication-Results')
  msg:set_meta('queue', 'null')
end)
`)
	d := startDaemon(t, nil, "--policy", policy)
	for _, sign := range []string{"1", "0"} {
		out, err := exec.Command("/usr/bin/python3", "-c", pySignAndSend, d.addr, keyPath, sign).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "sent") {
			t.Fatalf("python client: %v\n%s\n%s", err, out, d.log())
		}
	}
	d.stop(t, syscall.SIGINT)
	log := d.log()
	for _, want := range []string{
		"DMARC pass DKIM pass IPREV pass",
		"AR mx.auth.test; dkim=pass header.a=rsa-sha256 header.b=",
		" header.d=example.com header.i=@example.com header.s=s1; spf=pass reason=\"matched 'ip' directive\" smtp.helo=client.auth.test smtp.mailfrom=sender@example.com; " +
			"iprev=pass reason=\"ip 127.0.0.1 <-> client.auth.test.\" smtp.remote-ip=127.0.0.1; auth=none smtp.mailfrom=sender@example.com; " +
			"dmarc=pass reason=\"DKIM signature of example.com is aligned with example.com\" header.from=example.com; arc=none",
		// the unsigned copy still passes DMARC through aligned SPF
		"DMARC pass DKIM none IPREV pass",
		"AR mx.auth.test; dkim=none reason=\"message was not signed\"; spf=pass",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("want %q in\n%s", want, log)
		}
	}
}
