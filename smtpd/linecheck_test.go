package smtpd

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// checkLines is the rule lineCheck applies, written as a second pass over
// a whole body: the reference the streaming check is held to.
func checkLines(b []byte, limit int) (tooLong, badEnding bool) {
	for len(b) > 0 {
		line := b
		i := bytes.IndexByte(b, '\n')
		if i >= 0 {
			line, b = b[:i], b[i+1:]
			if len(line) == 0 || line[len(line)-1] != '\r' {
				badEnding = true
			} else {
				line = line[:len(line)-1]
			}
		} else {
			b = nil
		}
		if bytes.IndexByte(line, '\r') >= 0 {
			badEnding = true
		}
		if limit > 0 && len(line) > limit {
			tooLong = true
		}
	}
	return tooLong, badEnding
}

// streamLines runs lineCheck over b fed in pieces of the given sizes
// (the rest in one piece).
func streamLines(b []byte, limit int, pieces ...int) (tooLong, badEnding bool) {
	var c lineCheck
	c.start(limit)
	for _, n := range pieces {
		if n > len(b) {
			n = len(b)
		}
		c.feed(b[:n])
		b = b[n:]
	}
	c.feed(b)
	return c.finish()
}

func TestLineCheck(t *testing.T) {
	for _, tc := range []struct {
		in        string
		long, bad bool
	}{
		{"", false, false}, {"abc", false, false}, {"a\r\nb\r\n", false, false}, {"a\r\nb", false, false},
		{"a\n", false, true}, {"\n", false, true}, {"a\r", false, true}, {"a\rb\r\n", false, true},
		{"x\r\r\n", false, true}, {"\r\n\n", false, true}, {"\r\r\n\n", false, true}, {"\r\n\r", false, true},
		{strings.Repeat("y", 11) + "\r\n", true, false}, {strings.Repeat("y", 10) + "\r\n", false, false},
		{strings.Repeat("y", 10) + "\n", false, true}, {strings.Repeat("y", 11) + "\n", true, true},
		{strings.Repeat("y", 10), false, false}, {strings.Repeat("y", 11), true, false},
		{strings.Repeat("y", 10) + "\r", true, true}, {"a\r\n" + strings.Repeat("y", 11) + "\r\nb", true, false},
	} {
		if long, bad := checkLines([]byte(tc.in), 10); long != tc.long || bad != tc.bad {
			t.Errorf("reference %q: long %v bad %v, want %v %v", tc.in, long, bad, tc.long, tc.bad)
		}
		// every split into two and three pieces gives the same answer
		for i := 0; i <= len(tc.in); i++ {
			for j := 0; i+j <= len(tc.in); j++ {
				if long, bad := streamLines([]byte(tc.in), 10, i, j); long != tc.long || bad != tc.bad {
					t.Errorf("%q split at %d, %d: long %v bad %v, want %v %v", tc.in, i, i+j, long, bad, tc.long, tc.bad)
				}
			}
		}
	}
}

// FuzzLineCheck: the streaming check agrees with the whole-body reference
// however the body is cut into reads.
func FuzzLineCheck(f *testing.F) {
	f.Add([]byte("a\r\nb\r\n"), uint8(1), uint8(3), uint8(4))
	f.Add([]byte("x\r\r\n.\r\n"), uint8(2), uint8(1), uint8(3))
	f.Add([]byte("yyyyy\r\nyyyy\r\r\nyy\n"), uint8(5), uint8(6), uint8(4))
	f.Fuzz(func(t *testing.T, b []byte, a, c, limit uint8) {
		lim := int(limit % 8)
		wl, wb := checkLines(b, lim)
		if gl, gb := streamLines(b, lim, int(a), int(c), 1, 2, 3); gl != wl || gb != wb {
			t.Fatalf("%q limit %d cut %d %d: long %v bad %v, want %v %v", b, lim, a, c, gl, gb, wl, wb)
		}
	})
}

// TestBDATLinesAcrossChunks: a BDAT body's lines are judged across chunk
// boundaries as one body: a CR LF split between two chunks is a line
// ending, a CR that ends a chunk and is not followed by LF is bare, and a
// line whose bytes come in several chunks counts all of them.
func TestBDATLinesAcrossChunks(t *testing.T) {
	long := strings.Repeat("y", 500)
	for _, tc := range []struct {
		chunks []string
		want   string // reply to the last chunk under Deny
	}{
		{[]string{"H: 1\r\n\r\na\r", "\nb\r\n"}, "250 OK ids="},
		{[]string{"H: 1\r\n\r\na\r", "b\r\n"}, "552 5.6.0 message data must use CRLF for line endings"},
		{[]string{"H: 1\r\n\r\na\r", "\r\n"}, "552 5.6.0 message data must use CRLF for line endings"},
		{[]string{"H: 1\r\n\r\na", "\n"}, "552 5.6.0 message data must use CRLF for line endings"},
		{[]string{"H: 1\r\n\r\n" + long, long[:498], "\r\n"}, "250 OK ids="}, // 998 bytes
		{[]string{"H: 1\r\n\r\n" + long, long[:499], "\r\n"}, "500 5.2.3 line too long"},
		{[]string{"H: 1\r\n\r\n" + long, long[:498] + "\r", "\n"}, "250 OK ids="},
		{[]string{"H: 1\r\n\r\n" + long, long[:499] + "\r", "\n"}, "500 5.2.3 line too long"},
		{[]string{"H: 1\r\n\r\n" + long, long}, "500 5.2.3 line too long"}, // the last line, with no ending
	} {
		ts, got := smugglingServer(t, "Deny")
		c := greet(t, ts.addr)
		c.Cmd(t, "MAIL FROM:<a@x.example>", "250")
		c.Cmd(t, "RCPT TO:<b@y.example>", "250")
		for i, ch := range tc.chunks {
			if i < len(tc.chunks)-1 {
				c.SendRaw(fmt.Sprintf("BDAT %d\r\n%s", len(ch), ch))
				c.Expect(t, "250 2.0.0 Continue")
				continue
			}
			c.SendRaw(fmt.Sprintf("BDAT %d LAST\r\n%s", len(ch), ch))
		}
		c.Expect(t, tc.want)
		want := 0
		if strings.HasPrefix(tc.want, "250") {
			want = 1
		}
		if n := len(got()); n != want {
			t.Errorf("%q: %d messages received, want %d", tc.chunks, n, want)
		}
		c.Cmd(t, "NOOP", "250 the goggles")
	}
}

// benchBody is a 100 KB body of 78-byte lines, as bench/smtpgen sends.
func benchBody() []byte {
	line := strings.Repeat("0123456789abcdefghijklmnopqrstuvwxyz", 3)[:76] + "\r\n"
	return bytes.Repeat([]byte(line), 102400/len(line))
}

// BenchmarkLineCheck: the streaming check fed 16 KB reads against the
// reference's second pass over the whole body.
func BenchmarkLineCheck(b *testing.B) {
	body := benchBody()
	b.Run("stream", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for i := 0; i < b.N; i++ {
			if long, bad := streamLines(body, 998, 16384, 16384, 16384, 16384, 16384, 16384); long || bad {
				b.Fatal("bad body")
			}
		}
	})
	b.Run("second-pass", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for i := 0; i < b.N; i++ {
			if long, bad := checkLines(body, 998); long || bad {
				b.Fatal("bad body")
			}
		}
	})
}

// TestLineCheckRandom holds the word-at-a-time check to the reference over
// many short bodies of CR, LF and letters, cut at every kind of offset
// within the eight-byte words it reads, for limits below and above a word.
func TestLineCheckRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []byte("ab\r\n\r\n")
	for iter := 0; iter < 20000; iter++ {
		b := make([]byte, rng.IntN(40))
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		lim := rng.IntN(12)
		wl, wb := checkLines(b, lim)
		cut1, cut2 := rng.IntN(len(b)+1), rng.IntN(len(b)+1)
		if gl, gb := streamLines(b, lim, cut1, cut2); gl != wl || gb != wb {
			t.Fatalf("%q limit %d cut %d %d: long %v bad %v, want %v %v", b, lim, cut1, cut2, gl, gb, wl, wb)
		}
	}
}
