package dkim

import (
	"regexp"
	"testing"
)

// kumogo: removeSignature must give what the upstream regexp gave.
var upstreamSigRegex = regexp.MustCompile(`(b\s*=)[^;]+`)

var removeSignatureSeeds = []string{
	"DKIM-Signature: v=1; a=rsa-sha256; bh=abc=; b=SIG\r\n GNATURE==;\r\n",
	"DKIM-Signature: v=1; b\t\r\n =x; d=b=y; b=;b= ;bb=z",
	"b=", "b", "b=;", "ab=c", "b \f=\v", "b=\xc2b=x", "b  = x ; b=y",
	"DKIM-Signature: a=rsa-sha256; b=\r\n\tabc\r\n\tdef",
}

func TestKumogoRemoveSignature(t *testing.T) {
	for _, s := range removeSignatureSeeds {
		if got, want := removeSignature(s), upstreamSigRegex.ReplaceAllString(s, "$1"); got != want {
			t.Errorf("removeSignature(%q) = %q, upstream %q", s, got, want)
		}
	}
}

func FuzzKumogoRemoveSignature(f *testing.F) {
	for _, s := range removeSignatureSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := removeSignature(s), upstreamSigRegex.ReplaceAllString(s, "$1"); got != want {
			t.Errorf("removeSignature(%q) = %q, upstream %q", s, got, want)
		}
	})
}
