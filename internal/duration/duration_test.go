package duration

import (
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"20 minutes", 20 * time.Minute},
		{"5m", 5 * time.Minute},
		{"1h 30m", 90 * time.Minute},
		{"1h30m", 90 * time.Minute},
		{"10s", 10 * time.Second},
		{"7 days", 7 * 24 * time.Hour},
		{"2min", 2 * time.Minute},
		{"1 second", time.Second},
		{"3 secs", 3 * time.Second},
		{"2 hrs", 2 * time.Hour},
		{"1hr", time.Hour},
		{"1w", 7 * 24 * time.Hour},
		{"2 weeks", 14 * 24 * time.Hour},
		{"1M", 2_630_016 * time.Second},
		{"1 month", 2_630_016 * time.Second},
		{"1y", 31_557_600 * time.Second},
		{"250ms", 250 * time.Millisecond},
		{"5us", 5 * time.Microsecond},
		{"7ns", 7},
		{"  1d  ", 24 * time.Hour},
		{"1 minute 1 second", 61 * time.Second},
	}
	for _, tt := range tests {
		got, err := Parse(tt.in)
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.in, err)
			continue
		}
		if got != tt.want {
			t.Errorf("Parse(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, in := range []string{"", "  ", "10", "m", "5 parsecs", "1.5h", "-1s", "99999999999999999999s", "9999999999y"} {
		if d, err := Parse(in); err == nil {
			t.Errorf("Parse(%q) = %v, want error", in, d)
		}
	}
}

func TestFromSeconds(t *testing.T) {
	if d, err := FromSeconds(1.5); err != nil || d != 1500*time.Millisecond {
		t.Fatalf("FromSeconds(1.5) = %v, %v", d, err)
	}
	if d, err := FromSeconds(60); err != nil || d != time.Minute {
		t.Fatalf("FromSeconds(60) = %v, %v", d, err)
	}
	for _, bad := range []float64{-1, 1e300} {
		if _, err := FromSeconds(bad); err == nil {
			t.Errorf("FromSeconds(%v): want error", bad)
		}
	}
}
