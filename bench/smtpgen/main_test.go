package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dkim"
)

func TestMakeMessage(t *testing.T) {
	for size := 128; size < 400; size++ {
		m := makeMessage(size, "sender@bench.localhost")
		if len(m) != size {
			t.Fatalf("size %d: got %d bytes", size, len(m))
		}
		if !strings.HasSuffix(m, "\r\n") || strings.Contains(strings.ReplaceAll(m, "\r\n", ""), "\n") {
			t.Fatalf("size %d: lines not CRLF-terminated", size)
		}
		if strings.Contains(m, "\n.") {
			t.Fatalf("size %d: a line starts with a dot", size)
		}
	}
}

// TestDKIMSign: the signed message verifies (go-msgauth's verifier, the
// key published as a TXT record) for the sender's domain, and no line of
// it starts with a dot (DATA sends it unstuffed).
func TestDKIMSign(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	msg, err := dkimSign(makeMessage(4096, "a@auth.example"), "a@auth.example", "s1", keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(msg, "\n.") || !strings.HasPrefix(msg, "DKIM-Signature:") {
		t.Fatalf("signed message:\n%.300s", msg)
	}
	txt := "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub)
	vs, err := dkim.VerifyWithOptions(strings.NewReader(msg), &dkim.VerifyOptions{
		LookupTXT: func(name string) ([]string, error) {
			if name != "s1._domainkey.auth.example" {
				t.Errorf("lookup of %s", name)
			}
			return []string{txt}, nil
		},
	})
	if err != nil || len(vs) != 1 || vs[0].Err != nil || vs[0].Domain != "auth.example" {
		t.Fatalf("verification %+v %v", vs, err)
	}
}
