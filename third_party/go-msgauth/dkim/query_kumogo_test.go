package dkim

import "testing"

// kumogo: parsed key records are kept per record text; a bad record gives
// the same error every time, and the cache starts over when full.
func TestKumogoParsedKeyCache(t *testing.T) {
	a, err := parsePublicKeyCached(dnsPublicKey)
	if err != nil {
		t.Fatal(err)
	}
	b, err := parsePublicKeyCached(dnsPublicKey)
	if err != nil || a != b || a.Verifier == nil {
		t.Fatalf("second parse: %p %p %v", a, b, err)
	}
	want, wantErr := parsePublicKey("v=DKIM1; p=")
	for i := 0; i < 2; i++ {
		res, err := parsePublicKeyCached("v=DKIM1; p=")
		if res != want || err == nil || err.Error() != wantErr.Error() {
			t.Fatalf("revoked key: %v %v, want %v", res, err, wantErr)
		}
	}
	for i := 0; i < maxParsedKeys+1; i++ {
		parsePublicKeyCached("v=DKIM1; k=nope; x=" + string(rune('a'+i%26)) + string(rune(i)))
	}
	parsedKeys.Lock()
	n := len(parsedKeys.m)
	parsedKeys.Unlock()
	if n > maxParsedKeys {
		t.Fatalf("cache holds %d records", n)
	}
}
