package message

import (
	"reflect"
	"strings"
	"testing"
)

func newTestMessage(t testing.TB, data string) *Message {
	t.Helper()
	return New(NewIDGenerator(), Address{User: "s", Domain: "example.com"}, []Address{{User: "r", Domain: "example.com"}}, []byte(data))
}

func TestHeaders(t *testing.T) {
	tests := []struct {
		name string
		data string
		want []Header
	}{
		{"empty", "", nil},
		{"crlf", "From: a@example.com\r\nSubject: hi\r\n\r\nbody: no\r\n", []Header{{"From", "a@example.com"}, {"Subject", "hi"}}},
		{"bare lf", "From: a@example.com\nSubject: hi\n\nbody: no\n", []Header{{"From", "a@example.com"}, {"Subject", "hi"}}},
		{"folded", "Subject: one\r\n two\r\n\tthree\r\nX: y\r\n\r\n", []Header{{"Subject", "one two\tthree"}, {"X", "y"}}},
		{"fold after colon", "Subject:\r\n value\r\n\r\n", []Header{{"Subject", "value"}}},
		{"no blank line", "A: 1\r\nB: 2", []Header{{"A", "1"}, {"B", "2"}}},
		{"no space, empty value", "A:1\r\nB:\r\n\r\n", []Header{{"A", "1"}, {"B", ""}}},
		{"raw encoded word kept", "Subject: =?utf-8?q?caf=C3=A9?=\r\n\r\n", []Header{{"Subject", "=?utf-8?q?caf=C3=A9?="}}},
		{"no headers", "\r\nbody: x\r\n", nil},
		{"line without colon skipped", "A: 1\r\ngarbage\r\nB: 2\r\n\r\n", []Header{{"A", "1"}, {"B", "2"}}},
		{"mixed endings", "A: 1\nB: 2\r\n c\n\nX: body\n", []Header{{"A", "1"}, {"B", "2 c"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := newTestMessage(t, tt.data).Headers()
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Headers() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestFirstAndAllHeaderValues(t *testing.T) {
	data := "Subject: =?utf-8?q?caf=C3=A9?= ok\r\n" +
		"X-Tag: one\r\n" +
		"x-tag: =?utf-8?B?dHfDtg==?=\r\n" +
		"X-Bad: =?unknown-charset?q?abc?=\r\n" +
		"X-Fold: a\r\n b\r\n" +
		"\r\n" +
		"X-Tag: body\r\n"
	m := newTestMessage(t, data)
	tests := []struct {
		name  string
		first string
		found bool
		all   []string
	}{
		{"Subject", "café ok", true, []string{"café ok"}},
		{"SUBJECT", "café ok", true, []string{"café ok"}},
		{"X-Tag", "one", true, []string{"one", "twö"}},
		{"X-Bad", "=?unknown-charset?q?abc?=", true, []string{"=?unknown-charset?q?abc?="}},
		{"X-Fold", "a b", true, []string{"a b"}},
		{"Missing", "", false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := m.FirstHeader(tt.name)
			if got != tt.first || ok != tt.found {
				t.Errorf("FirstHeader(%q) = %q, %v; want %q, %v", tt.name, got, ok, tt.first, tt.found)
			}
			if all := m.AllHeaderValues(tt.name); !reflect.DeepEqual(all, tt.all) {
				t.Errorf("AllHeaderValues(%q) = %q, want %q", tt.name, all, tt.all)
			}
		})
	}
}

func TestAppendHeader(t *testing.T) {
	tests := []struct {
		name, data, want string
	}{
		{"crlf", "A: 1\r\n\r\nbody\r\n", "A: 1\r\nN: v\r\n\r\nbody\r\n"},
		{"bare lf", "A: 1\n\nbody\n", "A: 1\nN: v\r\n\nbody\n"},
		{"all headers", "A: 1\r\n", "A: 1\r\nN: v\r\n"},
		{"all headers no eol", "A: 1", "A: 1\r\nN: v\r\n"},
		{"empty", "", "N: v\r\n"},
		{"no headers", "\r\nbody\r\n", "N: v\r\n\r\nbody\r\n"},
		{"folded last", "A: 1\r\n 2\r\n\r\nb", "A: 1\r\n 2\r\nN: v\r\n\r\nb"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newTestMessage(t, tt.data)
			m.AppendHeader("N", "v", false)
			if got := string(m.Data()); got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
			// headroom is kept for later prepends
			m.PrependHeader("P", "1")
			if got := string(m.Data()); got != "P: 1\r\n"+tt.want {
				t.Fatalf("after prepend got %q", got)
			}
		})
	}
}

func TestAppendDoesNotModifySharedBuffer(t *testing.T) {
	orig := []byte("A: 1\r\n\r\nbody")
	shared := make([]byte, len(orig), 100)
	copy(shared, orig)
	m := newTestMessage(t, "")
	m.SetData(shared)
	m.AppendHeader("N", "v", false)
	m.RemoveAllNamedHeaders("A")
	if string(shared[:cap(shared)][:len(orig)]) != string(orig) {
		t.Fatalf("shared buffer modified: %q", shared)
	}
	if got := string(m.Data()); got != "N: v\r\n\r\nbody" {
		t.Fatalf("got %q", got)
	}
}

func TestEncodeHeaderValue(t *testing.T) {
	long := strings.Repeat("word ", 40)
	tests := []struct {
		name, hname, value, want string
	}{
		{"short ascii verbatim", "Subject", "hello world", "hello world"},
		{"newlines flattened", "Subject", "a\r\nb", "a b"},
		{"non-ascii q encoded", "Subject", "café", "=?utf-8?q?caf=C3=A9?="},
		{"soft wrap", "Subject", strings.TrimSpace(long),
			strings.TrimSpace(strings.Repeat("word ", 13)) + "\r\n" +
				strings.TrimSuffix(strings.Repeat(" word", 15), "") + "\r\n" +
				strings.Repeat(" word", 12)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := EncodeHeaderValue(tt.hname, tt.value)
			if got != tt.want {
				t.Fatalf("got %q\nwant %q", got, tt.want)
			}
			for i, line := range strings.Split(got, "\r\n") {
				l := len(line)
				if i == 0 {
					l += len(tt.hname) + 2
				}
				if l > softLineLimit {
					t.Errorf("line %d has %d columns", i, l)
				}
			}
		})
	}
}

func TestEncodeHardLimit(t *testing.T) {
	v := strings.Repeat("x", 2000)
	got := EncodeHeaderValue("X-Long", v)
	lines := strings.Split(got, "\r\n")
	if len(lines) != 3 {
		t.Fatalf("got %d lines", len(lines))
	}
	for i, l := range lines {
		n := len(l)
		if i == 0 {
			n += len("X-Long: ")
		}
		if n > hardLineLimit {
			t.Errorf("line %d: %d columns", i, n)
		}
	}
	if strings.ReplaceAll(strings.ReplaceAll(got, "\r\n ", ""), "\r\n", "") != v {
		t.Error("content changed")
	}
}

func TestEncodedRoundTrip(t *testing.T) {
	values := []string{
		"plain",
		"café au lait",
		strings.Repeat("ünïcödé ", 30),
		strings.Repeat("ascii words ", 30),
	}
	for _, v := range values {
		m := newTestMessage(t, "A: 1\r\n\r\nbody")
		m.AppendHeader("Subject", v, true)
		m.PrependHeaderEncoded("X-First", v, true)
		want := strings.TrimRight(v, " ")
		for _, name := range []string{"Subject", "X-First"} {
			got, ok := m.FirstHeader(name)
			if !ok || strings.TrimRight(got, " ") != want {
				t.Errorf("%s: got %q, want %q", name, got, want)
			}
		}
		for _, line := range strings.Split(string(m.Data()), "\r\n") {
			if len(line) > 78 {
				t.Errorf("line too long (%d): %q", len(line), line)
			}
		}
	}
	m := newTestMessage(t, "")
	m.PrependHeaderEncoded("X-Raw", "=?not encoded", false)
	if got := string(m.Data()); got != "X-Raw: =?not encoded\r\n" {
		t.Fatalf("got %q", got)
	}
}

func TestRemoveAllNamedHeaders(t *testing.T) {
	tests := []struct {
		name, data, remove, want string
	}{
		{"folded", "A: 1\r\nB: 2\r\n 3\r\nC: 4\r\nb: 5\r\n\r\nB: body\r\n", "b", "A: 1\r\nC: 4\r\n\r\nB: body\r\n"},
		{"none", "A: 1\r\n\r\n", "Z", "A: 1\r\n\r\n"},
		{"last without eol", "A: 1\r\nB: 2", "B", "A: 1\r\n"},
		{"bare lf", "A: 1\nB: 2\n\nx", "A", "B: 2\n\nx"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newTestMessage(t, tt.data)
			m.RemoveAllNamedHeaders(tt.remove)
			if got := string(m.Data()); got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestImportAndRemoveXHeaders(t *testing.T) {
	data := "From: a@example.com\r\n" +
		"X-Campaign-ID: c1\r\n" +
		"x-tenant: =?utf-8?q?t=C3=A9?=\r\n" +
		"X-Campaign-ID: c2\r\n" +
		"Xylophone: no\r\n" +
		"\r\n" +
		"X-Body: no\r\n"
	tests := []struct {
		name     string
		names    []string
		wantMeta map[string]any
		wantData string
	}{
		{"all", nil, map[string]any{"x_campaign_id": "c2", "x_tenant": "té"},
			"From: a@example.com\r\nXylophone: no\r\n\r\nX-Body: no\r\n"},
		{"listed", []string{"x-tenant", "From"}, map[string]any{"x_tenant": "té", "from": "a@example.com"},
			"X-Campaign-ID: c1\r\nX-Campaign-ID: c2\r\nXylophone: no\r\n\r\nX-Body: no\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newTestMessage(t, data)
			m.ImportXHeaders(tt.names)
			if !reflect.DeepEqual(m.MetaMap(), tt.wantMeta) {
				t.Errorf("meta = %v, want %v", m.MetaMap(), tt.wantMeta)
			}
			m.RemoveXHeaders(tt.names)
			if got := string(m.Data()); got != tt.wantData {
				t.Errorf("data = %q, want %q", got, tt.wantData)
			}
		})
	}
}

func TestRawHeadersNoAlloc(t *testing.T) {
	m := newTestMessage(t, "A: 1\r\nSubject: x\r\n y\r\nX-Z: 2\r\n\r\nbody")
	var names []string
	for name, value := range m.RawHeaders() {
		names = append(names, string(name)+"="+string(value))
	}
	want := []string{"A=1", "Subject=x\r\n y", "X-Z=2"}
	if !reflect.DeepEqual(names, want) {
		t.Fatalf("got %q", names)
	}
	n := testing.AllocsPerRun(100, func() {
		for name := range m.RawHeaders() {
			if len(name) == 0 {
				t.Fatal("empty")
			}
		}
	})
	if n != 0 {
		t.Errorf("RawHeaders allocates %v times", n)
	}
	n = testing.AllocsPerRun(100, func() {
		if _, ok := m.FirstHeader("X-Z"); !ok {
			t.Fatal("missing")
		}
	})
	if n > 1 {
		t.Errorf("FirstHeader allocates %v times", n)
	}
}

func BenchmarkFirstHeader(b *testing.B) {
	data := "Received: from a (1.2.3.4)\r\n  by b (KumoMTA 5.6.7.8)\r\n  with ESMTP id x for r@example.com;\r\n  Mon, 02 Jan 2006 15:04:05 +0000\r\n" +
		"From: a@example.com\r\nTo: r@example.com\r\nDate: Mon, 02 Jan 2006 15:04:05 +0000\r\nMessage-ID: <x@y>\r\n" +
		"Subject: hello there\r\nX-Campaign: c\r\n\r\n" + strings.Repeat("body line\r\n", 1000)
	m := newTestMessage(b, data)
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := m.FirstHeader("x-campaign"); !ok {
			b.Fatal("missing")
		}
	}
}

func TestFirstHeadersRaw(t *testing.T) {
	m := &Message{}
	m.SetData([]byte("X-Tenant: t1\r\nx-campaign: c1\r\nX-Tenant: t2\r\nSubject: s\r\n\r\nX-Other: body\r\n"))
	for _, tc := range []struct {
		a, b     string
		va, vb   string
		oka, okb bool
	}{
		{"X-Campaign", "x-tenant", "c1", "t1", true, true},
		{"X-Tenant", "X-Tenant", "t1", "t1", true, true},
		{"X-Missing", "Subject", "", "s", false, true},
		{"", "X-Other", "", "", false, false}, // body lines are not headers
	} {
		va, oka, vb, okb := m.FirstHeadersRaw(tc.a, tc.b)
		if string(va) != tc.va || oka != tc.oka || string(vb) != tc.vb || okb != tc.okb {
			t.Errorf("%q %q: %q %v %q %v", tc.a, tc.b, va, oka, vb, okb)
		}
		if fa, ok := m.FirstHeaderRaw(tc.a); tc.a != "" && (ok != oka || string(fa) != string(va)) {
			t.Errorf("%q differs from FirstHeaderRaw: %q %v", tc.a, fa, ok)
		}
	}
}
