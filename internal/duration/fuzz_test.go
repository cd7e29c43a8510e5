package duration

import "testing"

// FuzzParse: any string either fails or gives a duration that is not
// negative (no overflow wraps around), and "<that many>ns" parses back to
// the same value.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"1h 30m", "20 minutes", "2min", "9223372036854775807ns", "106751d", "300 years", "1", "s", "5x", "1h1h1h", " 0 s "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := Parse(s)
		if err != nil {
			return
		}
		if d < 0 {
			t.Fatalf("%q parsed as negative %v", s, d)
		}
		back, err := Parse(formatNS(int64(d)))
		if err != nil || back != d {
			t.Fatalf("%q = %v, but %dns parses as %v, %v", s, d, int64(d), back, err)
		}
	})
}

func formatNS(n int64) string {
	var b [24]byte
	i := len(b)
	i -= 2
	copy(b[i:], "ns")
	if n == 0 {
		i--
		b[i] = '0'
	}
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[i:])
}
