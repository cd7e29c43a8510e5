package message

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzHeaderEditing runs the header editors of the Lua API over arbitrary
// message data. Whatever the data, they must not panic, a field added by
// prepend or append must be found by the accessors afterwards, removal
// must remove it, and the body (everything after the header block) must
// come out byte for byte as it went in.
func FuzzHeaderEditing(f *testing.F) {
	for _, seed := range []string{
		"Subject: hi\r\nFrom: a@x\r\n\r\nbody\r\n",
		"Subject: folded\r\n  more\r\nX-A: 1\r\n\r\n",
		"no colon line\r\nX-B: 2\r\n\r\nbody",
		"  leading continuation\r\nX-C: 3\n\nbare lf body\n",
		"X-Only-Headers: yes",
		"X-Only-Headers: yes\r\n",
		"",
		"\r\n\r\njust a body",
		"Subject: =?utf-8?q?caf=C3=A9?=\r\n\r\n",
		"X-Fuzz-App: old\r\nx-fuzz-app: older\r\n\r\n",
		"Name : spaced\r\n\tfold\r\n\r\n",
		"\r",
		"A:\r\n:\r\n\r\n",
	} {
		f.Add([]byte(seed))
	}
	gen := NewIDGenerator()
	f.Fuzz(func(t *testing.T, data []byte) {
		m := New(gen, Address{User: "a", Domain: "x"}, []Address{{User: "b", Domain: "y"}}, bytes.Clone(data))
		body := bytes.Clone(data[headerBlockEnd(data):])
		_ = m.Headers()
		_, _ = m.FirstHeader("Subject")
		_ = m.AllHeaderValues("X-Fuzz-App")

		// Data that starts with a continuation line folds into whatever
		// is put in front of it, so only the prefix is certain.
		m.PrependHeader("X-Fuzz-Pre", "first")
		if v, ok := m.FirstHeader("x-fuzz-pre"); !ok || !strings.HasPrefix(v, "first") {
			t.Fatalf("prepended field not found first: %q %v in %q", v, ok, m.Data())
		}
		m.AppendHeader("X-Fuzz-App", "last", false)
		vals := m.AllHeaderValues("X-Fuzz-App")
		if len(vals) == 0 || vals[len(vals)-1] != "last" {
			t.Fatalf("appended field not found last: %q in %q", vals, m.Data())
		}
		m.AppendHeader("X-Fuzz-Enc", "naïve value", true)
		if v, ok := m.FirstHeader("X-Fuzz-Enc"); !ok || v != "naïve value" {
			t.Fatalf("encoded field reads back as %q %v in %q", v, ok, m.Data())
		}
		m.RemoveAllNamedHeaders("X-Fuzz-App")
		if vals := m.AllHeaderValues("X-Fuzz-App"); len(vals) != 0 {
			t.Fatalf("removed field still there: %q in %q", vals, m.Data())
		}
		if v, ok := m.FirstHeader("X-Fuzz-Pre"); !ok || !strings.HasPrefix(v, "first") {
			t.Fatalf("removal of another field lost X-Fuzz-Pre: %q", m.Data())
		}
		got := m.Data()
		if rest := got[headerBlockEnd(got):]; !bytes.Equal(rest, body) {
			t.Fatalf("body changed:\n%q\n%q", body, rest)
		}
	})
}
