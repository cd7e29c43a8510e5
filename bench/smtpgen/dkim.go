package main

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/emersion/go-msgauth/dkim"
)

// dkimSign returns msg with a DKIM-Signature (relaxed/relaxed, SHA-256)
// for the domain of from, made with the PEM private key in keyFile.
func dkimSign(msg, from, selector, keyFile string) (string, error) {
	pemBytes, err := os.ReadFile(keyFile)
	if err != nil {
		return "", fmt.Errorf("dkim key: %w", err)
	}
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return "", errors.New("dkim key: no PEM block in " + keyFile)
	}
	var key any
	switch block.Type {
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	}
	if err != nil {
		return "", fmt.Errorf("dkim key: %w", err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return "", fmt.Errorf("dkim key: %T cannot sign", key)
	}
	var out bytes.Buffer
	err = dkim.Sign(&out, strings.NewReader(msg), &dkim.SignOptions{
		Domain: from[strings.LastIndexByte(from, '@')+1:], Selector: selector, Signer: signer,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed, BodyCanonicalization: dkim.CanonicalizationRelaxed,
		HeaderKeys: []string{"From", "To", "Subject"},
	})
	if err != nil {
		return "", fmt.Errorf("dkim: %w", err)
	}
	return out.String(), nil
}
