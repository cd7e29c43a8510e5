package mailauth

import (
	"context"
	"crypto"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// maxARCInstances is RFC 8617's limit on ARC sets.
const maxARCInstances = 50

// arcSet is one ARC set: the three fields of instance i.
type arcSet struct {
	aar, ams, as rawField
	amsTags      map[string]string
	asTags       map[string]string
}

// arcChain reads the ARC sets of fields. It returns the sets by instance
// (index 0 is i=1), or why the chain is malformed; no ARC fields at all
// gives no sets and no error.
func arcChain(fields []rawField) ([]arcSet, error) {
	byI := map[int]*arcSet{}
	maxI := 0
	seen := map[string]bool{}
	for _, f := range fields {
		kind := strings.ToLower(f.name)
		if kind != "arc-seal" && kind != "arc-message-signature" && kind != "arc-authentication-results" {
			continue
		}
		_, value, _ := strings.Cut(f.raw, ":")
		var i int
		var tags map[string]string
		if kind == "arc-authentication-results" {
			first, _, _ := strings.Cut(value, ";")
			k, v, ok := strings.Cut(strings.TrimSpace(first), "=")
			if !ok || strings.TrimSpace(k) != "i" {
				return nil, errors.New("ARC-Authentication-Results without i= tag")
			}
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				return nil, errors.New("ARC-Authentication-Results with a bad i= tag")
			}
			i = n
		} else {
			tags = parseTags(value)
			n, err := strconv.Atoi(tags["i"])
			if err != nil {
				return nil, fmt.Errorf("%s with a bad i= tag", f.name)
			}
			i = n
		}
		if i < 1 || i > maxARCInstances {
			return nil, fmt.Errorf("ARC instance %d out of range", i)
		}
		key := kind + "/" + strconv.Itoa(i)
		if seen[key] {
			return nil, fmt.Errorf("more than one %s with i=%d", f.name, i)
		}
		seen[key] = true
		s := byI[i]
		if s == nil {
			s = &arcSet{}
			byI[i] = s
		}
		switch kind {
		case "arc-seal":
			s.as, s.asTags = f, tags
		case "arc-message-signature":
			s.ams, s.amsTags = f, tags
		default:
			s.aar = f
		}
		maxI = max(maxI, i)
	}
	out := make([]arcSet, maxI)
	for i := 1; i <= maxI; i++ {
		s := byI[i]
		if s == nil || s.as.raw == "" || s.ams.raw == "" || s.aar.raw == "" {
			return nil, fmt.Errorf("ARC set %d is incomplete", i)
		}
		out[i-1] = *s
	}
	return out, nil
}

// lookupKey fetches the public key of selector s in domain d.
func lookupKey(ctx context.Context, r Resolver, s, d string) (crypto.PublicKey, error, bool) {
	txts, err := r.LookupTXT(ctx, s+"._domainkey."+d)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("key unavailable: %w", err), true
	}
	if len(txts) != 1 {
		return nil, fmt.Errorf("no single key record at %s._domainkey.%s", s, d), false
	}
	pub, err := parseKeyRecord(txts[0])
	return pub, err, false
}

// verifyAMS validates an ARC-Message-Signature over fields and body.
func verifyAMS(ctx context.Context, r Resolver, set arcSet, fields []rawField, body []byte) (error, bool) {
	t := set.amsTags
	for _, req := range []string{"a", "b", "bh", "d", "h", "s"} {
		if t[req] == "" {
			return fmt.Errorf("ARC-Message-Signature %s lacks %s=", t["i"], req), false
		}
	}
	hc, bc, _ := strings.Cut(t["c"], "/")
	relaxedH, relaxedB := hc == "relaxed", bc == "relaxed"
	if sum := dkimHash(string(canonBody(body, relaxedB))); base64.StdEncoding.EncodeToString(sum) != t["bh"] {
		return errors.New("ARC-Message-Signature " + t["i"] + " body hash did not verify"), false
	}
	var signed strings.Builder
	for _, f := range selectHeaders(fields, strings.Split(t["h"], ":")) {
		if relaxedH {
			signed.WriteString(relaxedHeader(f.raw))
		} else {
			signed.WriteString(simpleHeader(f.raw))
		}
	}
	self := stripB(set.ams.raw)
	if relaxedH {
		self = relaxedHeader(self)
	} else {
		self = simpleHeader(self)
	}
	signed.WriteString(strings.TrimSuffix(self, "\r\n"))
	return checkSig(ctx, r, t, signed.String())
}

// sealInput is what ARC-Seal i signs: the sets 1..i, each AAR, AMS, AS
// relaxed, the last AS with its b= empty and without CRLF.
func sealInput(sets []arcSet, i int) string {
	var b strings.Builder
	for j := 0; j < i; j++ {
		b.WriteString(relaxedHeader(sets[j].aar.raw))
		b.WriteString(relaxedHeader(sets[j].ams.raw))
		if j == i-1 {
			b.WriteString(strings.TrimSuffix(relaxedHeader(stripB(sets[j].as.raw)), "\r\n"))
		} else {
			b.WriteString(relaxedHeader(sets[j].as.raw))
		}
	}
	return b.String()
}

func checkSig(ctx context.Context, r Resolver, t map[string]string, signed string) (error, bool) {
	pub, err, temp := lookupKey(ctx, r, t["s"], t["d"])
	if err != nil {
		return err, temp
	}
	sig, err := base64.StdEncoding.DecodeString(t["b"])
	if err != nil {
		return fmt.Errorf("malformed signature: %w", err), false
	}
	if err := verifySig(pub, t["a"], dkimHash(signed), sig); err != nil {
		return fmt.Errorf("signature of %s did not verify: %w", t["d"], err), false
	}
	return nil, false
}

// ARCStatus is the chain validation status (RFC 8617 section 4.4):
// "none", "pass" or "fail", with the reason of a failure.
type ARCStatus struct {
	CV     string
	Reason string
	Sets   int  // ARC sets present
	Temp   bool // the failure was a DNS failure
}

// VerifyARC validates the ARC chain of data (RFC 8617 section 5.2).
func VerifyARC(ctx context.Context, r Resolver, data []byte) ARCStatus {
	if !mayHaveARC(data) {
		return ARCStatus{CV: "none"}
	}
	fields, bodyAt := rawFields(data)
	sets, err := arcChain(fields)
	if err != nil {
		return ARCStatus{CV: "fail", Reason: err.Error(), Sets: len(sets)}
	}
	n := len(sets)
	if n == 0 {
		return ARCStatus{CV: "none"}
	}
	st := ARCStatus{CV: "fail", Sets: n}
	for i, s := range sets {
		cv := s.asTags["cv"]
		switch {
		case cv == "fail":
			st.Reason = fmt.Sprintf("ARC-Seal %d records cv=fail", i+1)
			return st
		case i == 0 && cv != "none":
			st.Reason = "ARC-Seal 1 must have cv=none"
			return st
		case i > 0 && cv != "pass":
			st.Reason = fmt.Sprintf("ARC-Seal %d must have cv=pass", i+1)
			return st
		}
	}
	if err, temp := verifyAMS(ctx, r, sets[n-1], fields, data[bodyAt:]); err != nil {
		st.Reason, st.Temp = err.Error(), temp
		return st
	}
	for i := n; i >= 1; i-- {
		if err, temp := checkSig(ctx, r, sets[i-1].asTags, sealInput(sets, i)); err != nil {
			st.Reason, st.Temp = fmt.Sprintf("ARC-Seal %d: %s", i, err), temp
			return st
		}
	}
	st.CV = "pass"
	return st
}

// ARCResult is the arc authentication result of a status, as
// msg:arc_verify returns it: pass, fail, none, or temperror when a key
// could not be fetched.
func (s ARCStatus) Result() Result {
	res := Result{Method: "arc", Result: s.CV, Reason: s.Reason, Props: map[string]string{}}
	if s.Temp {
		res.Result = "temperror"
	}
	if s.Sets > 0 {
		res.Props["arc.chain"] = strconv.Itoa(s.Sets)
	}
	return res
}

// ARCSigner is the key and identity that seals.
type ARCSigner struct {
	Domain, Selector string
	Key              crypto.Signer
	// Headers are signed by the ARC-Message-Signature (ARC fields are
	// left out).
	Headers []string
}

// SealARC adds an ARC set to data (RFC 8617 section 5.1): the
// ARC-Authentication-Results of servID and results, an
// ARC-Message-Signature and an ARC-Seal whose cv= is the chain's
// status. It returns the fields to prepend, or none when the chain has
// already failed or holds the maximum of 50 sets.
func SealARC(ctx context.Context, r Resolver, data []byte, s ARCSigner, servID string, results []Result, now time.Time) (string, error) {
	st := VerifyARC(ctx, r, data)
	fields, bodyAt := rawFields(data)
	sets, err := arcChain(fields)
	if err == nil && len(sets) > 0 && sets[len(sets)-1].asTags["cv"] == "fail" || st.Sets >= maxARCInstances {
		return "", nil
	}
	cv := st.CV
	if cv != "pass" && cv != "none" {
		cv = "fail"
	}
	i := strconv.Itoa(st.Sets + 1)
	if err != nil {
		sets = nil
	}
	ts := strconv.FormatInt(now.Unix(), 10)

	aar := rawField{name: "ARC-Authentication-Results",
		raw: "ARC-Authentication-Results: i=" + i + "; " + FormatHeader(servID, results) + "\r\n"}

	var names []string
	for _, h := range s.Headers {
		if !strings.HasPrefix(strings.ToLower(strings.TrimSpace(h)), "arc-") {
			names = append(names, strings.TrimSpace(h))
		}
	}
	bh := base64.StdEncoding.EncodeToString(dkimHash(string(canonBody(data[bodyAt:], true))))
	algo := "rsa-sha256"
	if isEd25519(s.Key) {
		algo = "ed25519-sha256"
	}
	amsHead := "ARC-Message-Signature: i=" + i + "; a=" + algo + "; c=relaxed/relaxed; d=" + s.Domain +
		"; s=" + s.Selector + "; t=" + ts + ";\r\n\th=" + strings.Join(names, ":") + ";\r\n\tbh=" + bh + ";\r\n\tb="
	var signed strings.Builder
	for _, f := range selectHeaders(fields, names) {
		signed.WriteString(relaxedHeader(f.raw))
	}
	signed.WriteString(strings.TrimSuffix(relaxedHeader(amsHead+"\r\n"), "\r\n"))
	_, b, err := signDigest(s.Key, dkimHash(signed.String()))
	if err != nil {
		return "", fmt.Errorf("arc_seal: %w", err)
	}
	ams := rawField{name: "ARC-Message-Signature", raw: amsHead + foldB(b) + "\r\n"}

	asHead := "ARC-Seal: i=" + i + "; a=" + algo + "; t=" + ts + "; cv=" + cv + ";\r\n\td=" + s.Domain +
		"; s=" + s.Selector + ";\r\n\tb="
	all := append(sets, arcSet{aar: aar, ams: ams, as: rawField{name: "ARC-Seal", raw: asHead + "\r\n"}})
	_, b, err = signDigest(s.Key, dkimHash(sealInput(all, len(all))))
	if err != nil {
		return "", fmt.Errorf("arc_seal: %w", err)
	}
	return asHead + foldB(b) + "\r\n" + ams.raw + aar.raw, nil
}

// foldB folds a base64 value every 72 characters.
func foldB(b string) string {
	var out strings.Builder
	for len(b) > 72 {
		out.WriteString(b[:72])
		out.WriteString("\r\n\t ")
		b = b[72:]
	}
	out.WriteString(b)
	return out.String()
}
