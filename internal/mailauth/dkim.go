package mailauth

import (
	"bytes"
	"context"
	"strings"

	"github.com/emersion/go-msgauth/dkim"
)

// MaxDKIMSignatures is how many signatures VerifyDKIM checks; KumoMTA's
// dkim_verify page sets this limit against crafted messages.
const MaxDKIMSignatures = 10

// VerifyDKIM verifies the DKIM signatures at the top of data (an RFC 5322
// message with CRLF line endings) and returns one result per signature,
// in header order, with props header.d, header.i, header.s, header.a and
// header.b (the signature's first 8 characters). A message without
// signatures gives no results.
func VerifyDKIM(ctx context.Context, r Resolver, data []byte) []Result {
	sigs := dkimSignatures(data)
	if len(sigs) == 0 {
		return nil
	}
	if bareLF(data) {
		return []Result{{Method: "dkim", Result: "permerror", Reason: "message has non-canonical line endings"}}
	}
	nr := netResolver{r}
	verifs, err := dkim.VerifyBytes(data, &dkim.VerifyOptions{
		LookupTXT:        func(name string) ([]string, error) { return nr.LookupTXT(ctx, name) },
		MaxVerifications: MaxDKIMSignatures,
	})
	if len(verifs) == 0 && err != nil {
		reason := strings.TrimPrefix(err.Error(), "dkim: ")
		return []Result{{Method: "dkim", Result: "permerror", Reason: reason}}
	}
	out := make([]Result, 0, len(verifs))
	for i, v := range verifs {
		res := Result{Method: "dkim", Props: map[string]string{}}
		if i < len(sigs) {
			for _, p := range [...]struct{ name, val string }{
				{"header.d", sigs[i].d}, {"header.i", sigs[i].i}, {"header.s", sigs[i].s},
				{"header.a", sigs[i].a}, {"header.b", sigs[i].b8},
			} {
				if p.val != "" {
					res.Props[p.name] = p.val
				}
			}
		}
		if v.Domain != "" {
			res.Props["header.d"] = v.Domain
		}
		if v.Identifier != "" {
			res.Props["header.i"] = v.Identifier
		}
		switch {
		case v.Err == nil:
			res.Result = "pass"
		case dkim.IsTempFail(v.Err):
			res.Result = "temperror"
		case dkim.IsPermFail(v.Err):
			res.Result = "permerror"
		default:
			res.Result = "fail"
		}
		if v.Err != nil {
			res.Reason = strings.TrimPrefix(v.Err.Error(), "dkim: ")
		}
		out = append(out, res)
	}
	return out
}

// sigTags are the tags of a DKIM-Signature that its result shows, white
// space removed: d, i, s, a, and the first 8 bytes of b.
type sigTags struct{ d, i, s, a, b8 string }

// dkimSignatures returns the tags of the DKIM-Signature fields of data's
// header, in order, at most MaxDKIMSignatures. Fields and tags are read as
// the reference in header_ref_test.go reads them (the first of a repeated
// tag counts), but only the signatures' values are built, and only the
// tags shown.
func dkimSignatures(data []byte) []sigTags {
	var out []sigTags
	var cur []byte
	in := false // the field being read is a signature
	flush := func() {
		if in {
			out = append(out, parseSigTags(string(cur)))
			in = false
		}
	}
	for len(data) > 0 && len(out) < MaxDKIMSignatures {
		end := bytes.IndexByte(data, '\n')
		line := data
		if end >= 0 {
			line, data = data[:end], data[end+1:]
		} else {
			data = nil
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			if in {
				cur = append(append(cur, ' '), bytes.TrimSpace(line)...)
			}
			continue
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		flush()
		if len(out) < MaxDKIMSignatures && bytes.EqualFold(bytes.TrimSpace(name), []byte("DKIM-Signature")) {
			in = true
			cur = append(cur[:0], bytes.TrimSpace(value)...)
		}
	}
	flush()
	return out
}

// parseSigTags is parseTags for the tags of sigTags alone.
func parseSigTags(v string) sigTags {
	var t sigTags
	var seen [5]bool
	for v != "" {
		var part string
		part, v, _ = strings.Cut(v, ";")
		k, val, ok := strings.Cut(part, "=")
		if !ok {
			continue
		}
		var n int
		switch strings.TrimSpace(k) {
		case "d":
			n = 0
		case "i":
			n = 1
		case "s":
			n = 2
		case "a":
			n = 3
		case "b":
			n = 4
		default:
			continue
		}
		if seen[n] {
			continue
		}
		seen[n] = true
		switch n {
		case 0:
			t.d = stripSpace(val)
		case 1:
			t.i = stripSpace(val)
		case 2:
			t.s = stripSpace(val)
		case 3:
			t.a = stripSpace(val)
		case 4:
			t.b8 = first8(val)
		}
	}
	return t
}

// first8 is the first 8 bytes of stripSpace(v), without building all of
// it when v starts with ASCII.
func first8(v string) string {
	var b [8]byte
	n := 0
	for i := 0; i < len(v) && n < 8; i++ {
		switch c := v[i]; {
		case c >= 0x80:
			s := stripSpace(v)
			return s[:min(8, len(s))]
		case c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f':
		default:
			b[n] = c
			n++
		}
	}
	return string(b[:n])
}

// parseTags reads a tag=value list (RFC 6376 section 3.2), whitespace
// removed from values.
func parseTags(v string) map[string]string {
	tags := make(map[string]string, 12)
	for v != "" {
		var part string
		part, v, _ = strings.Cut(v, ";")
		k, val, ok := strings.Cut(part, "=")
		if !ok {
			continue
		}
		k = strings.TrimSpace(k)
		if _, dup := tags[k]; dup || k == "" {
			continue
		}
		tags[k] = stripSpace(val)
	}
	return tags
}

// stripSpace is strings.Join(strings.Fields(s), ""), without copying s
// when it has no white space.
func stripSpace(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f' || c >= 0x80 {
			return strings.Join(strings.Fields(s), "")
		}
	}
	return s
}

// bareLF reports whether data's lines end in LF without CR.
func bareLF(data []byte) bool {
	for i := 0; i < len(data); i++ {
		j := bytes.IndexByte(data[i:], '\n')
		if j < 0 {
			return false
		}
		i += j
		if i == 0 || data[i-1] != '\r' {
			return true
		}
	}
	return false
}
