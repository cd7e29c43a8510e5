package dkim

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"math/big"
	mrand "math/rand"
	"testing"
)

// kumogo: rsaVerifier with the kept modulus must agree with crypto/rsa on
// every input (rsa_kumogo.go).

func testRSAKeys(t testing.TB) []*rsa.PrivateKey {
	var keys []*rsa.PrivateKey
	for _, bits := range []int{1024, 2048, 2049, 3072} {
		k, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	return keys
}

func agree(t testing.TB, v rsaVerifier, h crypto.Hash, hashed, sig []byte) {
	t.Helper()
	want := rsa.VerifyPKCS1v15(v.PublicKey, h, hashed, sig)
	got := v.Verify(h, hashed, sig)
	if (want == nil) != (got == nil) {
		t.Fatalf("crypto/rsa says %v, kept modulus says %v (%d-bit key, hash %v, sig %x)", want, got, v.N.BitLen(), h, sig)
	}
}

func TestKumogoRSAVerifierAgrees(t *testing.T) {
	rng := mrand.New(mrand.NewSource(1))
	for _, key := range testRSAKeys(t) {
		v := newRSAVerifier(&key.PublicKey)
		if v.mod == nil {
			t.Fatalf("%d-bit key: no modulus kept", key.N.BitLen())
		}
		for _, h := range []crypto.Hash{crypto.SHA256, crypto.SHA1} {
			for i := 0; i < 20; i++ {
				msg := make([]byte, rng.Intn(100))
				rng.Read(msg)
				hh := h.New()
				hh.Write(msg)
				hashed := hh.Sum(nil)
				sig, err := rsa.SignPKCS1v15(nil, key, h, hashed)
				if err != nil {
					t.Fatal(err)
				}
				if err := v.Verify(h, hashed, sig); err != nil {
					t.Fatalf("valid signature refused: %v", err)
				}
				agree(t, v, h, hashed, sig)
				// one bit flipped in the signature, in the hash
				bad := append([]byte(nil), sig...)
				bad[rng.Intn(len(bad))] ^= 1 << rng.Intn(8)
				agree(t, v, h, hashed, bad)
				badh := append([]byte(nil), hashed...)
				badh[rng.Intn(len(badh))] ^= 1 << rng.Intn(8)
				agree(t, v, h, badh, sig)
				// the other hash's DigestInfo, a short hash, a short or long signature
				other := crypto.SHA1
				if h == crypto.SHA1 {
					other = crypto.SHA256
				}
				agree(t, v, other, hashed, sig)
				agree(t, v, h, hashed[:len(hashed)-1], sig)
				agree(t, v, h, hashed, sig[1:])
				agree(t, v, h, hashed, append([]byte{0}, sig...))
				// random signatures, and ones at or above the modulus
				rnd := make([]byte, len(sig))
				rng.Read(rnd)
				agree(t, v, h, hashed, rnd)
				agree(t, v, h, hashed, key.N.FillBytes(make([]byte, len(sig))))
				above := new(big.Int).Add(key.N, big.NewInt(int64(1+rng.Intn(1000))))
				if above.BitLen() <= len(sig)*8 {
					agree(t, v, h, hashed, above.FillBytes(make([]byte, len(sig))))
				}
				// s = 1 and s = n-1
				agree(t, v, h, hashed, big.NewInt(1).FillBytes(make([]byte, len(sig))))
				agree(t, v, h, hashed, new(big.Int).Sub(key.N, big.NewInt(1)).FillBytes(make([]byte, len(sig))))
			}
		}
		// a hash crypto/rsa handles without a kept prefix here
		agree(t, v, crypto.SHA512, make([]byte, 64), make([]byte, key.Size()))
	}
}

// An encoded message that differs from the expected one only in the
// padding (a 0xff turned into another byte, the separator or the block
// type changed) is refused, as crypto/rsa refuses it: signatures made by
// raising such messages to the private exponent.
func TestKumogoRSAVerifierPadding(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	v := newRSAVerifier(&key.PublicKey)
	hashed := sha256.Sum256([]byte("kumogo"))
	prefix := digestInfoPrefixes[crypto.SHA256]
	k := key.Size()
	good := make([]byte, k)
	good[1] = 1
	for i := 2; i < k-len(prefix)-len(hashed)-1; i++ {
		good[i] = 0xff
	}
	copy(good[k-len(prefix)-len(hashed):], prefix)
	copy(good[k-len(hashed):], hashed[:])
	sign := func(em []byte) []byte {
		s := new(big.Int).Exp(new(big.Int).SetBytes(em), key.D, key.N)
		return s.FillBytes(make([]byte, k))
	}
	if err := v.Verify(crypto.SHA256, hashed[:], sign(good)); err != nil {
		t.Fatalf("the well-formed encoded message is refused: %v", err)
	}
	t1 := k - len(prefix) - len(hashed)
	for _, i := range []int{1, 2, 100, t1 - 2, t1 - 1, t1, t1 + 3, k - 1} {
		em := append([]byte(nil), good...)
		em[i] ^= 0x5a
		if new(big.Int).SetBytes(em).Cmp(key.N) >= 0 {
			continue
		}
		sig := sign(em)
		if v.Verify(crypto.SHA256, hashed[:], sig) == nil {
			t.Errorf("EM altered at byte %d accepted", i)
		}
		agree(t, v, crypto.SHA256, hashed[:], sig)
	}
}

// Keys crypto/rsa refuses are left to it.
func TestKumogoRSAVerifierOddKeys(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range []int{0, 1, 2, 4, 65536, 1 << 31} {
		pub := rsa.PublicKey{N: key.N, E: e}
		if v := newRSAVerifier(&pub); v.mod != nil {
			t.Errorf("e=%d: modulus kept", e)
		}
	}
	even := rsa.PublicKey{N: new(big.Int).Lsh(key.N, 1), E: 65537}
	v := newRSAVerifier(&even)
	if v.mod != nil {
		t.Error("even modulus kept")
	}
	h := sha256.Sum256(nil)
	agree(t, v, crypto.SHA256, h[:], make([]byte, even.Size()))
}

func FuzzKumogoRSAVerifier(f *testing.F) {
	key, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		f.Fatal(err)
	}
	v := newRSAVerifier(&key.PublicKey)
	h := sha256.Sum256([]byte("x"))
	sig, _ := rsa.SignPKCS1v15(nil, key, crypto.SHA256, h[:])
	f.Add(h[:], sig)
	f.Fuzz(func(t *testing.T, hashed, sig []byte) {
		agree(t, v, crypto.SHA256, hashed, sig)
	})
}
