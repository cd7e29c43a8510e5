// Package certs builds the TLS server configuration of a listener: the
// configured certificate and key (KeySources), or a self-signed certificate
// for the listener's host name when none is configured, as KumoMTA does for
// its ESMTP and HTTP listeners (start_http_listener's use_tls).
package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/kumogo/kumogo/internal/config"
)

// ServerConfig returns a TLS configuration serving cert/key, or a fresh
// self-signed certificate for host when both are unset.
func ServerConfig(cert, key config.KeySource, host string) (*tls.Config, error) {
	var pair tls.Certificate
	var err error
	switch {
	case cert.IsZero() && key.IsZero():
		pair, err = SelfSigned(host)
	case cert.IsZero() || key.IsZero():
		return nil, errors.New("tls_certificate and tls_private_key must be given together")
	default:
		var certPEM, keyPEM []byte
		if certPEM, err = cert.Read(); err != nil {
			return nil, fmt.Errorf("tls_certificate: %w", err)
		}
		if keyPEM, err = key.Read(); err != nil {
			return nil, fmt.Errorf("tls_private_key: %w", err)
		}
		pair, err = tls.X509KeyPair(certPEM, keyPEM)
	}
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}, nil
}

// SelfSigned makes a P-256 certificate for host, valid for a year.
func SelfSigned(host string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: host},
		DNSNames:              []string{host},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}))
}
