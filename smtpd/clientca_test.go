package smtpd

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/smtp"
	"sync"
	"testing"
	"time"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/message"
)

// testCA makes a CA and returns its PEM and a function that issues client
// certificates signed by it.
func testCA(t *testing.T) ([]byte, func(cn string) tls.Certificate) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kumogo test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	issue := func(cn string) tls.Certificate {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: cn, Organization: []string{"kumogo test"}},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), issue
}

// TestTLSRequiredClientCA: with tls_required_client_ca a client that starts
// TLS must present a certificate from that CA, and its subject is in conn
// meta as tls_peer_subject_name; one without a certificate (or with a
// certificate from elsewhere) fails the handshake, and the listener goes on.
func TestTLSRequiredClientCA(t *testing.T) {
	caPEM, issue := testCA(t)
	_, otherIssue := testCA(t)
	var mu sync.Mutex
	var subjects []string
	p := &fakePolicy{received: func(m *message.Message) error {
		m.SetMeta("queue", "null")
		s, _ := m.MetaString("tls_peer_subject_name")
		mu.Lock()
		subjects = append(subjects, s)
		mu.Unlock()
		return nil
	}}
	cfg := testConfig()
	cfg.TLSRequiredClientCA = config.KeySource{Data: caPEM}
	ts := startServer(t, cfg, p)

	starttls := func(certs []tls.Certificate) (*smtp.Client, error) {
		cl, err := smtp.Dial(ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		if err := cl.Hello("client.example"); err != nil {
			t.Fatal(err)
		}
		err = cl.StartTLS(&tls.Config{InsecureSkipVerify: true, ServerName: "mx.test", Certificates: certs})
		if err == nil {
			err = cl.Noop() // TLS 1.3: a refused client certificate shows on the first read
		}
		if err != nil {
			cl.Close()
			return nil, err
		}
		return cl, nil
	}
	if _, err := starttls(nil); err == nil {
		t.Fatal("STARTTLS without a client certificate succeeded")
	}
	if _, err := starttls([]tls.Certificate{otherIssue("stranger.example")}); err == nil {
		t.Fatal("STARTTLS with a certificate from another CA succeeded")
	}
	cl, err := starttls([]tls.Certificate{issue("client.example")})
	if err != nil {
		t.Fatalf("STARTTLS with a valid client certificate: %v", err)
	}
	clientSend(t, cl, "mtls")
	cl.Quit()
	mu.Lock()
	defer mu.Unlock()
	if len(subjects) != 1 || subjects[0] != "CN=client.example,O=kumogo test" {
		t.Fatalf("tls_peer_subject_name %q", subjects)
	}
}
