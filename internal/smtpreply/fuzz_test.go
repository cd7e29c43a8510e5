package smtpreply

import (
	"strings"
	"testing"
)

// FuzzSplitEnhanced: a split code is class.subject.detail with a class of
// 2 to 5 and at most three digits in each part, and leaves exactly the
// text after it.
func FuzzSplitEnhanced(f *testing.F) {
	for _, s := range []string{"5.7.1 relaying not permitted", "2.0.0", "4.4.5 x", "6.0.0 x", "5.7 x", "5.7.1234 x", "x.y.z w", "", " ", "5..1 x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		class, subject, detail, rest, ok := SplitEnhanced(text)
		if !ok {
			if rest != text {
				t.Fatalf("%q: not split but rest is %q", text, rest)
			}
			return
		}
		if class < 2 || class > 5 || subject < 0 || subject > 999 || detail < 0 || detail > 999 {
			t.Fatalf("%q: code %d.%d.%d", text, class, subject, detail)
		}
		if !strings.HasSuffix(text, rest) || len(rest) >= len(text) {
			t.Fatalf("%q: rest %q", text, rest)
		}
	})
}
