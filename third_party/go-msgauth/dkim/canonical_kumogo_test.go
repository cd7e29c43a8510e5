package dkim

import (
	"bytes"
	"io"
	"math/rand"
	"testing"
)

// kumogo: the upstream (v0.7.0) crlfFixer and relaxed body
// canonicalizer, kept as the reference for the faster versions in
// canonical.go.

type refCRLFFixer struct{ cr bool }

func (cf *refCRLFFixer) Fix(b []byte) []byte {
	res := make([]byte, 0, len(b))
	for _, ch := range b {
		prevCR := cf.cr
		cf.cr = false
		switch ch {
		case '\r':
			cf.cr = true
		case '\n':
			if !prevCR {
				res = append(res, '\r')
			}
		}
		res = append(res, ch)
	}
	return res
}

type refRelaxedBody struct {
	w         io.Writer
	crlfBuf   []byte
	wsp       bool
	written   bool
	crlfFixer refCRLFFixer
}

func (c *refRelaxedBody) Write(b []byte) (int, error) {
	written := len(b)
	b = c.crlfFixer.Fix(b)
	canonical := make([]byte, 0, len(b))
	for _, ch := range b {
		if ch == ' ' || ch == '\t' {
			c.wsp = true
		} else if ch == '\r' || ch == '\n' {
			c.wsp = false
			c.crlfBuf = append(c.crlfBuf, ch)
		} else {
			if len(c.crlfBuf) > 0 {
				canonical = append(canonical, c.crlfBuf...)
				c.crlfBuf = c.crlfBuf[:0]
			}
			if c.wsp {
				canonical = append(canonical, ' ')
				c.wsp = false
			}
			canonical = append(canonical, ch)
		}
	}
	if !c.written && len(canonical) > 0 {
		c.written = true
	}
	_, err := c.w.Write(canonical)
	return written, err
}

func (c *refRelaxedBody) Close() error {
	if c.written {
		if _, err := c.w.Write([]byte(crlf)); err != nil {
			return err
		}
	}
	return nil
}

// chunks writes data to w in pieces cut at the given offsets.
func chunks(w io.Writer, data []byte, cuts []int) {
	prev := 0
	for _, c := range cuts {
		if c > prev && c < len(data) {
			w.Write(data[prev:c])
			prev = c
		}
	}
	w.Write(data[prev:])
}

func compareCanon(t *testing.T, data []byte, cuts []int) {
	t.Helper()
	var want, got bytes.Buffer
	ref := &refRelaxedBody{w: &want}
	chunks(ref, data, cuts)
	ref.Close()
	fast := new(relaxedCanonicalizer).CanonicalizeBody(&got)
	chunks(fast, data, cuts)
	fast.Close()
	if !bytes.Equal(want.Bytes(), got.Bytes()) {
		t.Fatalf("relaxed body of %q cut at %v:\n got %q\nwant %q", data, cuts, got.Bytes(), want.Bytes())
	}
	var rf refCRLFFixer
	var cf crlfFixer
	want.Reset()
	got.Reset()
	prev := 0
	for _, c := range append(cuts, len(data)) {
		if c > prev && c <= len(data) {
			want.Write(rf.Fix(data[prev:c]))
			got.Write(cf.Fix(data[prev:c]))
			prev = c
		}
	}
	if !bytes.Equal(want.Bytes(), got.Bytes()) || rf.cr != cf.cr {
		t.Fatalf("crlf fix of %q cut at %v:\n got %q\nwant %q", data, cuts, got.Bytes(), want.Bytes())
	}
}

func TestKumogoCanonicalizersMatchUpstream(t *testing.T) {
	alphabet := []byte("ab \t\r\n.")
	rnd := rand.New(rand.NewSource(1))
	for i := 0; i < 20000; i++ {
		data := make([]byte, rnd.Intn(40))
		for j := range data {
			data[j] = alphabet[rnd.Intn(len(alphabet))]
		}
		var cuts []int
		for k := rnd.Intn(4); k > 0 && len(data) > 0; k-- {
			cuts = append(cuts, rnd.Intn(len(data)))
		}
		sortInts(cuts)
		compareCanon(t, data, cuts)
	}
	for _, s := range []string{"", "\r\n", "a\r\n\r\n", " a  b \r\n\r\n", "a\rb\n", "a \r", "\n\n\nx", "a\t\r\n b\r\n"} {
		compareCanon(t, []byte(s), nil)
	}
}

func FuzzKumogoCanonicalizers(f *testing.F) {
	f.Add([]byte("Hey \t \r\nyou!\r\n\r\n"), uint8(3), uint8(9))
	f.Add([]byte("a\rb\nc  d \n\r\n"), uint8(1), uint8(0))
	f.Fuzz(func(t *testing.T, data []byte, c1, c2 uint8) {
		cuts := []int{int(c1), int(c2)}
		sortInts(cuts)
		compareCanon(t, data, cuts)
	})
}

func sortInts(a []int) {
	for i := 1; i < len(a); i++ {
		for j := i; j > 0 && a[j] < a[j-1]; j-- {
			a[j], a[j-1] = a[j-1], a[j]
		}
	}
}

// BenchmarkRelaxedBody100KB: relaxed body canonicalization of 100 KB of
// text lines, upstream's loop against kumogo's.
func BenchmarkRelaxedBody100KB(b *testing.B) {
	var body bytes.Buffer
	for body.Len() < 100*1024 {
		body.WriteString("The quick brown fox jumps over the lazy dog, again and again and again.\r\n")
	}
	data := body.Bytes()
	b.Run("upstream", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for i := 0; i < b.N; i++ {
			c := &refRelaxedBody{w: io.Discard}
			c.Write(data)
			c.Close()
		}
	})
	b.Run("kumogo", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for i := 0; i < b.N; i++ {
			c := new(relaxedCanonicalizer).CanonicalizeBody(io.Discard)
			c.Write(data)
			c.Close()
		}
	})
}
