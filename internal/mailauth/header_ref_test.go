package mailauth

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
)

// The header helpers that dkimSignatures and mayHaveARC replaced, kept as
// the reference they must agree with.

func refDKIMSignatures(data []byte) []map[string]string {
	var out []map[string]string
	for _, f := range headerFields(data) {
		if !strings.EqualFold(f.name, "DKIM-Signature") {
			continue
		}
		out = append(out, refParseTags(f.value))
		if len(out) == MaxDKIMSignatures {
			break
		}
	}
	return out
}

func refParseTags(v string) map[string]string {
	tags := map[string]string{}
	for _, part := range strings.Split(v, ";") {
		k, val, ok := strings.Cut(part, "=")
		if !ok {
			continue
		}
		k = strings.TrimSpace(k)
		if _, dup := tags[k]; dup || k == "" {
			continue
		}
		tags[k] = strings.Join(strings.Fields(val), "")
	}
	return tags
}

type field struct {
	name, value string // value unfolded, CRLFs kept out
}

// headerFields splits the header of data into fields (names as written,
// values unfolded).
func headerFields(data []byte) []field {
	var out []field
	for len(data) > 0 {
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
			if n := len(out); n > 0 {
				out[n-1].value += " " + strings.TrimSpace(string(line))
			}
			continue
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		out = append(out, field{name: string(bytes.TrimSpace(name)), value: strings.TrimSpace(string(value))})
	}
	return out
}

var headerSeeds = []string{
	"DKIM-Signature: v=1; a=rsa-sha256; d=example.com;\r\n\ts=sel; b=abc\r\n def;\r\nFrom: a@b\r\n\r\nbody\r\n",
	"From: a@b\r\nX: y\r\n z\r\ndkim-signature : d = ex ample.org ; s=a;s=b\r\nARC-Seal: i=1\r\n\r\n",
	" lead\r\nno colon\r\n\tcont\r\nDKIM-Signature:\r\n\r\n",
	"DKIM-Signature: d=a\nDKIM-Signature: d=b\r\n\r\nDKIM-Signature: d=c\r\n",
	"\u00a0ARC-Seal: i=1\r\nx: \u0085\u2028\r\n\r\n",
	"aRc-x\r\n",
	"",
	strings.Repeat("DKIM-Signature: d=x; i=@x\r\n", 12),
	"DKIM-Signature: b= \u00a0ab c\u2028defghij; b=x; d=; d=y; s = s 1 ;a\t=rsa\r\n\r\n",
	"DKIM-Signature: b=\r\n\tabcd\r\n efgh\r\n ijk\r\n\r\n",
}

func checkHeaderHelpers(t *testing.T, data []byte) {
	got := dkimSignatures(data)
	var want []sigTags
	for _, m := range refDKIMSignatures(data) {
		want = append(want, sigTags{d: m["d"], i: m["i"], s: m["s"], a: m["a"], b8: m["b"][:min(8, len(m["b"]))]})
	}
	if len(got) != 0 || len(want) != 0 {
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("dkimSignatures(%q) = %v, reference %v", data, got, want)
		}
	}
	if !mayHaveARC(data) {
		fields, _ := rawFields(data)
		if sets, err := arcChain(fields); len(sets) != 0 || err != nil {
			t.Fatalf("mayHaveARC(%q) is false but the header has ARC fields", data)
		}
	}
}

func TestHeaderHelpersAgree(t *testing.T) {
	for _, s := range headerSeeds {
		checkHeaderHelpers(t, []byte(s))
	}
	if !mayHaveARC([]byte("From: a\r\nArc-Seal: i=1; cv=none\r\n\r\n")) {
		t.Error("ARC field missed")
	}
	if mayHaveARC([]byte("From: a\r\n\r\nARC-Seal: in the body\r\n")) {
		t.Error("ARC found in the body")
	}
}

func FuzzHeaderHelpers(f *testing.F) {
	for _, s := range headerSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkHeaderHelpers(t, bytes.Clone(data))
	})
}
