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
	verifs, err := dkim.VerifyWithOptions(bytes.NewReader(data), &dkim.VerifyOptions{
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
			tags := sigs[i]
			for _, t := range []string{"d", "i", "s", "a"} {
				if val := tags[t]; val != "" {
					res.Props["header."+t] = val
				}
			}
			if b := tags["b"]; b != "" {
				res.Props["header.b"] = b[:min(8, len(b))]
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

// dkimSignatures returns the tags of the DKIM-Signature fields of data's
// header, in order, at most MaxDKIMSignatures. Fields are split as the
// reference in header_ref_test.go splits them, but only the signatures'
// values are built.
func dkimSignatures(data []byte) []map[string]string {
	var out []map[string]string
	var cur []byte
	in := false // the field being read is a signature
	flush := func() {
		if in {
			out = append(out, parseTags(string(cur)))
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
