package mailauth

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// The DKIM pieces ARC (RFC 8617) is built from: canonicalization (RFC
// 6376 section 3.4), header selection, b= stripping and signatures.
// go-msgauth keeps these unexported, so ARC has its own.

// rawField is one header field as written: name and the whole field
// including its line breaks.
type rawField struct {
	name string
	raw  string // "Name: value\r\n" with folding
}

// rawFields splits the header of data into fields, and returns the
// offset of the body.
func rawFields(data []byte) ([]rawField, int) {
	var out []rawField
	i := 0
	for i < len(data) {
		end := bytes.IndexByte(data[i:], '\n')
		if end < 0 {
			end = len(data) - i - 1
		}
		line := data[i : i+end+1]
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			return out, i + end + 1
		}
		if (line[0] == ' ' || line[0] == '\t') && len(out) > 0 {
			out[len(out)-1].raw += string(line)
		} else if name, _, ok := bytes.Cut(line, []byte(":")); ok {
			out = append(out, rawField{name: strings.TrimSpace(string(name)), raw: string(line)})
		}
		i += end + 1
	}
	return out, len(data)
}

// mayHaveARC reports whether the header of data (as rawFields reads it)
// holds "arc-" in any case anywhere: without it no field is an ARC one,
// and most mail has none, so the fields need not be split.
func mayHaveARC(data []byte) bool {
	i := 0
	for i < len(data) {
		end := bytes.IndexByte(data[i:], '\n')
		if end < 0 {
			end = len(data) - i - 1
		}
		line := data[i : i+end+1]
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			return false
		}
		for j := 0; j+4 <= len(line); j++ {
			if line[j+3] == '-' && line[j]|0x20 == 'a' && line[j+1]|0x20 == 'r' && line[j+2]|0x20 == 'c' {
				return true
			}
		}
		i += end + 1
	}
	return false
}

var wspRun = regexp.MustCompile(`[ \t]+`)

// relaxedHeader canonicalizes one field (with its CRLF) the relaxed way.
func relaxedHeader(raw string) string {
	name, value, _ := strings.Cut(raw, ":")
	value = strings.NewReplacer("\r\n", "", "\n", "").Replace(value)
	value = strings.TrimSpace(wspRun.ReplaceAllString(value, " "))
	return strings.ToLower(strings.TrimSpace(name)) + ":" + value + "\r\n"
}

// simpleHeader is the field as written, with a CRLF ending.
func simpleHeader(raw string) string {
	return strings.TrimRight(raw, "\r\n") + "\r\n"
}

// canonBody canonicalizes a body (simple or relaxed).
func canonBody(body []byte, relaxed bool) []byte {
	lines := strings.Split(strings.ReplaceAll(string(body), "\r\n", "\n"), "\n")
	var b strings.Builder
	for _, l := range lines {
		l = strings.TrimRight(l, "\r")
		if relaxed {
			l = strings.TrimRight(wspRun.ReplaceAllString(l, " "), " ")
		}
		b.WriteString(l)
		b.WriteString("\r\n")
	}
	out := b.String()
	for strings.HasSuffix(out, "\r\n\r\n") {
		out = strings.TrimSuffix(out, "\r\n")
	}
	if relaxed && out == "\r\n" {
		return nil
	}
	return []byte(out)
}

// selectHeaders picks the fields named by names, each name taking the
// next instance from the bottom up (RFC 6376 section 5.4.2).
func selectHeaders(fields []rawField, names []string) []rawField {
	used := map[int]bool{}
	var out []rawField
	for _, n := range names {
		for i := len(fields) - 1; i >= 0; i-- {
			if !used[i] && strings.EqualFold(fields[i].name, strings.TrimSpace(n)) {
				used[i] = true
				out = append(out, fields[i])
				break
			}
		}
	}
	return out
}

// bTag matches the value of the b= tag (not bh=) of a tag list.
var bTag = regexp.MustCompile(`(^|;)([ \t\r\n]*b[ \t\r\n]*=)[^;]*`)

// stripB empties the b= value of a signature field.
func stripB(raw string) string {
	name, value, _ := strings.Cut(raw, ":")
	value = bTag.ReplaceAllString(strings.TrimRight(value, "\r\n"), "$1$2")
	return name + ":" + value + "\r\n"
}

// dkimHash is a sha256 digest.
func dkimHash(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

// verifySig checks sig over digest with the key record's public key.
func verifySig(pub crypto.PublicKey, algo string, digest, sig []byte) error {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if algo != "rsa-sha256" {
			return fmt.Errorf("algorithm %s does not fit an RSA key", algo)
		}
		return rsa.VerifyPKCS1v15(k, crypto.SHA256, digest, sig)
	case ed25519.PublicKey:
		if algo != "ed25519-sha256" {
			return fmt.Errorf("algorithm %s does not fit an ed25519 key", algo)
		}
		if !ed25519.Verify(k, digest, sig) {
			return errors.New("ed25519 verification failed")
		}
		return nil
	}
	return errors.New("unsupported key type")
}

// signDigest signs digest with key for algorithm rsa-sha256 or
// ed25519-sha256 (the algorithm follows the key).
func signDigest(key crypto.Signer, digest []byte) (string, string, error) {
	var sig []byte
	var err error
	algo := "rsa-sha256"
	if _, ok := key.Public().(ed25519.PublicKey); ok {
		algo = "ed25519-sha256"
		sig, err = key.Sign(nil, digest, crypto.Hash(0))
	} else {
		sig, err = key.Sign(nil, digest, crypto.SHA256)
	}
	if err != nil {
		return "", "", err
	}
	return algo, base64.StdEncoding.EncodeToString(sig), nil
}

// parseKeyRecord reads the public key of a DKIM key record.
func parseKeyRecord(txt string) (crypto.PublicKey, error) {
	tags := parseTags(txt)
	p := tags["p"]
	if p == "" {
		return nil, errors.New("key revoked or missing")
	}
	der, err := base64.StdEncoding.DecodeString(p)
	if err != nil {
		return nil, fmt.Errorf("key syntax error: %w", err)
	}
	if tags["k"] == "ed25519" {
		if len(der) != ed25519.PublicKeySize {
			return nil, errors.New("invalid ed25519 key size")
		}
		return ed25519.PublicKey(der), nil
	}
	if pub, err := x509.ParsePKIXPublicKey(der); err == nil {
		return pub, nil
	}
	if pub, err := x509.ParsePKCS1PublicKey(der); err == nil {
		return pub, nil
	}
	return nil, errors.New("key syntax error: not an RSA public key")
}

func isEd25519(k crypto.Signer) bool {
	_, ok := k.Public().(ed25519.PublicKey)
	return ok
}
