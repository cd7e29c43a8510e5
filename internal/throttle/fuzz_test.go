package throttle

import "testing"

// FuzzParse: any spec either fails or gives a usable throttle: a window of
// at least a second (a zero period would divide by zero in the bucket).
func FuzzParse(f *testing.F) {
	for _, s := range []string{"10/s", "1,000/hour", "20/30minute", "local:5/m,max_burst=10", "0/s", "1/0s", "/", "5/", "18446744073709551615/d", "1_0/h,max_burst="} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		s, err := Parse(spec)
		if err != nil {
			return
		}
		if s.Period < 1e9 {
			t.Fatalf("%q: period %v", spec, s.Period)
		}
	})
}
