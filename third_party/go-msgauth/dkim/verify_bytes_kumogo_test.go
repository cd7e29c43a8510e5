package dkim

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
)

// kumogo: VerifyBytes must give what VerifyWithOptions gives.

func toCRLF(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }

// multiSigned is mailString signed by the RSA key relaxed/relaxed, then
// simple/simple, then by the Ed25519 key relaxed/relaxed: two signatures
// share a body hash.
func multiSigned(t testing.TB) string {
	msg := mailString
	for _, o := range []*SignOptions{
		{Domain: "example.org", Selector: "brisbane", Signer: testPrivateKey,
			HeaderCanonicalization: CanonicalizationRelaxed, BodyCanonicalization: CanonicalizationRelaxed},
		{Domain: "example.org", Selector: "brisbane", Signer: testPrivateKey},
		{Domain: "football.example.com", Selector: "brisbane", Signer: testEd25519PrivateKey,
			HeaderCanonicalization: CanonicalizationRelaxed, BodyCanonicalization: CanonicalizationRelaxed},
	} {
		var b bytes.Buffer
		if err := Sign(&b, strings.NewReader(msg), o); err != nil {
			t.Fatal(err)
		}
		msg = b.String()
	}
	return msg
}

func verifyBoth(t *testing.T, msg []byte, o *VerifyOptions) {
	t.Helper()
	want, wantErr := VerifyWithOptions(bytes.NewReader(msg), o)
	got, gotErr := VerifyBytes(msg, o)
	if !reflect.DeepEqual(got, want) || !reflect.DeepEqual(gotErr, wantErr) {
		t.Fatalf("message %q:\nVerifyBytes %v %v\nVerifyWithOptions %v %v", msg, verifs(got), gotErr, verifs(want), wantErr)
	}
}

func verifs(vs []*Verification) []Verification {
	out := make([]Verification, len(vs))
	for i, v := range vs {
		out[i] = *v
	}
	return out
}

func verifyBytesSeeds(t testing.TB) []string {
	multi := multiSigned(t)
	return []string{
		toCRLF(verifiedMailString), toCRLF(verifiedRawRSAMailString), toCRLF(verifiedEd25519MailString),
		toCRLF(tooManySignaturesMailString), tooManySignaturesMailString, toCRLF(unsignedMailString),
		signedMailString, multi, strings.Replace(multi, "Joe.", "Jim.", 1),
		strings.Replace(multi, "\r\n\r\n", "\r\n", 1), "asdf", "", "\r\n", " lead: x\r\n\r\nbody",
		toCRLF(verifiedMailString)[:200], strings.Replace(multi, "b=", "b=x", 1),
	}
}

func TestKumogoVerifyBytes(t *testing.T) {
	for _, s := range verifyBytesSeeds(t) {
		for _, o := range []*VerifyOptions{nil, {MaxVerifications: 2}} {
			verifyBoth(t, []byte(s), o)
		}
	}
	// two signatures with one body canonicalization: one body hash
	v, err := VerifyBytes([]byte(multiSigned(t)), nil)
	if err != nil || len(v) != 3 || v[0].Err != nil || v[1].Err != nil || v[2].Err != nil {
		t.Fatalf("three good signatures: %v %v", verifs(v), err)
	}
}

func FuzzKumogoVerifyBytes(f *testing.F) {
	for _, s := range verifyBytesSeeds(f) {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		verifyBoth(t, msg, &VerifyOptions{MaxVerifications: 3})
	})
}
