package runtime

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/kumogo/kumogo/internal/message"
)

// TestDKIMSign signs messages from a policy with an RSA and an ed25519
// key (keys from a file and inline, relaxed and simple canonicalization,
// over-signing) and checks every signature with two verifiers: go-msgauth
// and dkimpy (an independent implementation), each given the public key
// instead of DNS.
func TestDKIMSign(t *testing.T) {
	dir := t.TempDir()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)})
	os.WriteFile(filepath.Join(dir, "rsa.pem"), rsaPEM, 0o600)
	edPub, edKey, _ := ed25519.GenerateKey(rand.Reader)
	edDER, _ := x509.MarshalPKCS8PrivateKey(edKey)
	edPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: edDER})
	rsaPubDER, _ := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	records := map[string]string{
		"rsa._domainkey.example.com": "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(rsaPubDER),
		"ed._domainkey.example.com":  "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(edPub),
	}

	r := newRuntime(t, fmt.Sprintf(`
local kumo = require 'kumo'
kumo.on('smtp_server_message_received', function(msg)
  local which = msg:get_meta('which')
  local signer
  if which == 'rsa' then
    signer = kumo.dkim.rsa_sha256_signer {
      domain = 'example.com', selector = 'rsa', headers = { 'From', 'To', 'Subject' },
      key = %q, body_length = true, reporting = true, -- not implemented: signed without
    }
  elseif which == 'rsa-simple' then
    signer = kumo.dkim.rsa_sha256_signer {
      domain = 'example.com', selector = 'rsa', headers = { 'From', 'Subject' },
      key = %q, header_canonicalization = 'Simple', body_canonicalization = 'Simple',
      over_sign = true, expiration = 3600,
    }
  else
    signer = kumo.dkim.ed25519_signer {
      domain = 'example.com', selector = 'ed', headers = { 'From', 'Subject' },
      key = { key_data = %q },
    }
  end
  msg:dkim_sign(signer)
end)`, filepath.Join(dir, "rsa.pem"), filepath.Join(dir, "rsa.pem"), edPEM))

	body := "From: Sender <s@example.com>\r\nTo: r@example.net\r\nSubject:   Hello  there \r\n\r\nBody line\r\n.leading dot\r\n\r\n\r\n"
	gen := message.NewIDGenerator()
	for _, which := range []string{"rsa", "rsa-simple", "ed"} {
		m := message.New(gen, message.Address{User: "s", Domain: "example.com"}, []message.Address{{User: "r", Domain: "example.net"}}, []byte(body))
		m.SetMeta("which", which)
		if err := r.MessageReceived(context.Background(), m, message.NewConnMeta()); err != nil {
			t.Fatalf("%s: %v", which, err)
		}
		signed := m.Data()
		if !bytes.HasPrefix(signed, []byte("DKIM-Signature: ")) || !bytes.HasSuffix(signed, []byte(body)) {
			t.Fatalf("%s: signed message %q", which, signed)
		}
		// go-msgauth
		vs, err := dkim.VerifyWithOptions(bytes.NewReader(signed), &dkim.VerifyOptions{
			LookupTXT: func(domain string) ([]string, error) { return []string{records[domain]}, nil },
		})
		if err != nil || len(vs) != 1 || vs[0].Err != nil {
			t.Fatalf("%s: go-msgauth: %v %+v", which, err, vs)
		}
		// dkimpy
		py := "/usr/bin/python3"
		if _, err := os.Stat(py); err != nil {
			py = "python3"
		}
		script := `import sys, dkim
recs = {k.encode(): v.encode() for k, v in (l.split(' ', 1) for l in sys.argv[1:])}
msg = sys.stdin.buffer.read()
ok = dkim.verify(msg, dnsfunc=lambda name, timeout=5: recs.get(name.rstrip(b'.')))
print('pass' if ok else 'fail')
`
		var args []string
		for k, v := range records {
			args = append(args, k+" "+v)
		}
		cmd := exec.Command(py, append([]string{"-c", script}, args...)...)
		cmd.Stdin = bytes.NewReader(signed)
		out, err := cmd.CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "pass" {
			t.Fatalf("%s: dkimpy: %v %s\nmessage:\n%s", which, err, out, signed)
		}
	}
}

func TestDKIMSignerErrors(t *testing.T) {
	edPEMKey := func() string {
		_, k, _ := ed25519.GenerateKey(rand.Reader)
		der, _ := x509.MarshalPKCS8PrivateKey(k)
		return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	}()
	for _, tc := range []struct{ lua, want string }{
		{`kumo.dkim.rsa_sha256_signer { selector = 's', headers = {'From'}, key = { key_data = 'x' } }`, "missing field `domain`"},
		{`kumo.dkim.rsa_sha256_signer { domain = 'd', selector = 's', key = { key_data = 'x' } }`, "missing field `headers`"},
		{`kumo.dkim.rsa_sha256_signer { domain = 'd', selector = 's', headers = {'From'}, key = { key_data = 'x' } }`, "private key"},
		{`kumo.dkim.rsa_sha256_signer { domain = 'd', selector = 's', headers = {'From'}, key = '/nonexistent/key.pem' }`, "no such file"},
		{`kumo.dkim.rsa_sha256_signer { domain = 'd', selector = 's', headers = {'From'}, key = { key_data = [[` + edPEMKey + `]] } }`, "not an RSA key"},
		{`kumo.dkim.rsa_sha256_signer { domain = 'd', selector = 's', headers = {'From'}, key = { key_data = 'x' }, header_canonicalization = 'Loose' }`, "unknown variant"},
		{`kumo.dkim.rsa_sha256_signer { domain = 'd', selector = 's', headers = {'From'}, key = { key_data = 'x' }, colour = 'red' }`, "unknown field"},
	} {
		_, err := initWith(t, tc.lua)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error containing %q", tc.lua, err, tc.want)
		}
	}
}
