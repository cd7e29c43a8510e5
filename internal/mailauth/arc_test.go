package mailauth_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kumogo/kumogo/internal/mailauth"
)

// pyARC runs dkimpy (Debian's python3-dkim, an independent ARC
// implementation): "verify" prints the chain status of the message on
// stdin; "sign" seals it as lists.example and prints the new fields. Its
// DNS is the one key record given, never a real resolver.
const pyARC = `
import sys, dkim
mode, keyname, keyrec = sys.argv[1], sys.argv[2], sys.argv[3]
msg = sys.stdin.buffer.read()
def dnsfunc(name, timeout=5):
    if isinstance(name, bytes):
        name = name.decode()
    if name.rstrip('.') == keyname:
        return keyrec.encode()
    return None
if mode == "verify":
    cv, results, comment = dkim.arc_verify(msg, dnsfunc=dnsfunc)
    print("CV=" + cv.decode(), comment)
else:
    keyfile = sys.argv[4]
    hdrs = dkim.arc_sign(msg, b"s1", b"example.org", open(keyfile, "rb").read(), b"lists.example",
                         include_headers=[b"from", b"to", b"subject"])
    sys.stdout.buffer.write(b"".join(hdrs))
`

func pyARCRun(t *testing.T, msg []byte, args ...string) string {
	t.Helper()
	if _, err := os.Stat("/usr/bin/arcverify"); err != nil {
		t.Fatalf("dkimpy is not installed (scripts/install-test-deps.sh installs python3-dkim): %v", err)
	}
	cmd := exec.Command("/usr/bin/python3", append([]string{"-c", pyARC}, args...)...)
	cmd.Stdin = bytes.NewReader(msg)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("dkimpy: %v\n%s", err, out)
	}
	return string(out)
}

const arcMsg = "From: Alice <alice@example.com>\r\nTo: list@lists.example\r\nSubject: arc test\r\n" +
	"Authentication-Results: lists.example; arc=none; dkim=pass header.d=example.com; spf=pass smtp.mailfrom=alice@example.com\r\n" +
	"\r\nHello  world \r\n\r\n"

func TestARCAgainstDkimpy(t *testing.T) {
	key, txt := dkimKey(t)
	rec := strings.NewReplacer(`" "`, "", `"`, "").Replace(txt)
	r := zoneResolver(t, `$ORIGIN example.org.
s1._domainkey TXT `+txt+`
`)
	ctx := context.Background()
	signer := mailauth.ARCSigner{Domain: "example.org", Selector: "s1", Key: key, Headers: []string{"From", "To", "Subject", "ARC-Seal"}}
	results := []mailauth.Result{{Method: "spf", Result: "pass", Props: map[string]string{"smtp.mailfrom": "alice@example.com"}}}

	if st := mailauth.VerifyARC(ctx, r, []byte(arcMsg)); st.CV != "none" || st.Result().Result != "none" {
		t.Fatalf("no chain: %+v", st)
	}

	// our seal (i=1, cv=none) verified by dkimpy
	hdrs, err := mailauth.SealARC(ctx, r, []byte(arcMsg), signer, "mx.kumogo.test", results, time.Now())
	if err != nil || !strings.Contains(hdrs, "ARC-Seal: i=1; a=rsa-sha256; t=") || !strings.Contains(hdrs, "cv=none") {
		t.Fatalf("seal: %v\n%s", err, hdrs)
	}
	sealed := hdrs + arcMsg
	if out := pyARCRun(t, []byte(sealed), "verify", "s1._domainkey.example.org", rec); !strings.HasPrefix(out, "CV=pass") {
		t.Fatalf("dkimpy rejects our i=1 seal: %s\n%s", out, sealed)
	}
	if st := mailauth.VerifyARC(ctx, r, []byte(sealed)); st.CV != "pass" {
		t.Fatalf("own i=1 seal: %+v", st)
	}

	// a second hop (i=2, cv=pass), again checked by dkimpy
	hdrs2, err := mailauth.SealARC(ctx, r, []byte(sealed), signer, "mx2.kumogo.test", results, time.Now())
	if err != nil || !strings.Contains(hdrs2, "i=2") || !strings.Contains(hdrs2, "cv=pass") {
		t.Fatalf("second seal: %v\n%s", err, hdrs2)
	}
	twice := hdrs2 + sealed
	if out := pyARCRun(t, []byte(twice), "verify", "s1._domainkey.example.org", rec); !strings.HasPrefix(out, "CV=pass") {
		t.Fatalf("dkimpy rejects our i=2 seal: %s\n%s", out, twice)
	}
	if st := mailauth.VerifyARC(ctx, r, []byte(twice)); st.CV != "pass" || st.Sets != 2 {
		t.Fatalf("own i=2 chain: %+v", st)
	}

	// a body changed after sealing: both implementations fail the chain
	tampered := strings.Replace(twice, "Hello", "Jello", 1)
	if st := mailauth.VerifyARC(ctx, r, []byte(tampered)); st.CV != "fail" || !strings.Contains(st.Reason, "body hash") {
		t.Errorf("tampered: %+v", st)
	}
	if out := pyARCRun(t, []byte(tampered), "verify", "s1._domainkey.example.org", rec); !strings.HasPrefix(out, "CV=fail") {
		t.Errorf("dkimpy on tampered: %s", out)
	}
	// a failed chain gets a cv=fail seal, and nothing after that
	failed, err := mailauth.SealARC(ctx, r, []byte(tampered), signer, "mx3", results, time.Now())
	if err != nil || !strings.Contains(failed, "i=3") || !strings.Contains(failed, "cv=fail") {
		t.Fatalf("seal of a failed chain: %v\n%s", err, failed)
	}
	if more, _ := mailauth.SealARC(ctx, r, []byte(failed+tampered), signer, "mx4", results, time.Now()); more != "" {
		t.Errorf("sealed after cv=fail: %s", more)
	}

	// dkimpy's seal verified by ours
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "k.pem")
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600)
	theirs := pyARCRun(t, []byte(arcMsg), "sign", "s1._domainkey.example.org", rec, keyFile)
	if !strings.Contains(theirs, "ARC-Seal") {
		t.Fatalf("dkimpy did not seal: %s", theirs)
	}
	theirMsg := theirs + arcMsg
	if st := mailauth.VerifyARC(ctx, r, []byte(theirMsg)); st.CV != "pass" {
		t.Fatalf("dkimpy's seal: %+v\n%s", st, theirMsg)
	}
	// its ARC-Authentication-Results changed: the seal no longer verifies
	if !strings.HasPrefix(theirs, "ARC-Seal") && !strings.Contains(theirs, "ARC-Authentication-Results: i=1; lists.example;") {
		t.Fatalf("dkimpy's AAR: %s", theirs)
	}
	changedAAR := strings.Replace(theirMsg, "i=1; lists.example; arc=none", "i=1; lists.example; arc=pass", 1)
	if changedAAR == theirMsg {
		t.Fatalf("no AAR to change in %s", theirMsg)
	}
	if st := mailauth.VerifyARC(ctx, r, []byte(changedAAR)); st.CV != "fail" || !strings.Contains(st.Reason, "ARC-Seal 1") {
		t.Errorf("changed AAR: %+v", st)
	}
	// a field the AMS does not sign may change
	unsigned := strings.Replace(theirMsg, "\r\n\r\nHello", "\r\nX-Added: later\r\n\r\nHello", 1)
	if st := mailauth.VerifyARC(ctx, r, []byte(unsigned)); st.CV != "pass" {
		t.Errorf("unsigned field added: %+v", st)
	}

	// a DNS failure is temperror; a malformed chain fails
	dead := failing{r}
	srvKey := strings.ReplaceAll(sealed, "d=example.org", "d=servfail.example.org")
	if st := mailauth.VerifyARC(ctx, dead, []byte(srvKey)); st.Result().Result != "temperror" {
		t.Errorf("dns failure: %+v", st.Result())
	}
	if st := mailauth.VerifyARC(ctx, r, []byte("ARC-Seal: i=1; cv=none; a=rsa-sha256; d=x; s=y; b=abc\r\n"+arcMsg)); st.CV != "fail" || !strings.Contains(st.Reason, "incomplete") {
		t.Errorf("incomplete set: %+v", st)
	}
}
