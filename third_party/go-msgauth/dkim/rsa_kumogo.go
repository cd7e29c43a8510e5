package dkim

// kumogo: an RSA verifier that keeps the key's Montgomery modulus.
//
// crypto/rsa.VerifyPKCS1v15 rebuilds the modulus of the public key
// (bigmod.NewModulus: a constant-time R² computation) on every call, which
// cost about 40 % of an RSA-2048 DKIM verification; the package offers no
// way to keep it. filippo.io/bigmod is the same code as the standard
// library's crypto/internal/fips140/bigmod, exported, so the modulus is
// built once when the key record is parsed (and kept by
// parsePublicKeyCached) and each verification is only the public
// exponentiation. The checks are those of crypto/rsa (RFC 8017 section
// 8.2.2, RSASSA-PKCS1-v1_5 verification): the signature must be exactly
// the modulus' length and smaller than it, and s^e mod n must equal the
// whole encoded message EM = 0x00 || 0x01 || 0xff... || 0x00 || DigestInfo
// || H; any other hash, or a key crypto/rsa would refuse, goes to
// crypto/rsa itself. rsa_kumogo_test.go compares both for valid, altered
// and random signatures.

import (
	"bytes"
	"crypto"
	"crypto/rsa"

	"filippo.io/bigmod"
)

// digestInfoPrefixes are the DER prefixes of the DigestInfo of RFC 8017
// section 9.2, note 1.
var digestInfoPrefixes = map[crypto.Hash][]byte{
	crypto.SHA1:   {0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04, 0x14},
	crypto.SHA256: {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20},
}

// newRSAVerifier keeps the modulus of pub when crypto/rsa would accept the
// key (odd modulus of at least 1024 bits, odd exponent between 3 and
// 2^31-1); otherwise every verification goes to crypto/rsa, which reports
// what is wrong.
func newRSAVerifier(pub *rsa.PublicKey) rsaVerifier {
	v := rsaVerifier{PublicKey: pub}
	if pub.N == nil || pub.N.BitLen() < 1024 || pub.N.Bit(0) == 0 || pub.E < 3 || pub.E&1 == 0 || pub.E > 1<<31-1 {
		return v
	}
	if m, err := bigmod.NewModulus(pub.N.Bytes()); err == nil {
		v.mod = m
	}
	return v
}

// verifyPKCS1v15 is rsa.VerifyPKCS1v15 with the kept modulus.
func (v rsaVerifier) verifyPKCS1v15(hash crypto.Hash, hashed, sig []byte) error {
	prefix, ok := digestInfoPrefixes[hash]
	if v.mod == nil || !ok {
		return rsa.VerifyPKCS1v15(v.PublicKey, hash, hashed, sig)
	}
	if len(hashed) != hash.Size() {
		return rsa.VerifyPKCS1v15(v.PublicKey, hash, hashed, sig) // its error
	}
	k := v.mod.Size()
	if len(sig) != k || k < len(prefix)+len(hashed)+11 {
		return rsa.ErrVerification
	}
	s, err := bigmod.NewNat().SetBytes(sig, v.mod)
	if err != nil { // sig ≥ n
		return rsa.ErrVerification
	}
	em := bigmod.NewNat().ExpShortVarTime(s, uint(v.E), v.mod).Bytes(v.mod)
	// em must be 0x00 0x01 0xff... 0x00 prefix hashed
	t := k - len(prefix) - len(hashed)
	if em[0] != 0 || em[1] != 1 || em[t-1] != 0 ||
		!bytes.Equal(em[t:t+len(prefix)], prefix) || !bytes.Equal(em[t+len(prefix):], hashed) {
		return rsa.ErrVerification
	}
	for _, c := range em[2 : t-1] {
		if c != 0xff {
			return rsa.ErrVerification
		}
	}
	return nil
}
