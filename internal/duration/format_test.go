package duration

import (
	"testing"
	"time"
)

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                                  "0s",
		20 * time.Minute:                   "20m",
		90 * time.Minute:                   "1h 30m",
		7 * 24 * time.Hour:                 "7days",
		24 * time.Hour:                     "1day",
		1500 * time.Millisecond:            "1s 500ms",
		time.Microsecond + time.Nanosecond: "1us 1ns",
		2_630_016 * time.Second:            "1month",
		2 * 31_557_600 * time.Second:       "2years",
	} {
		if got := Format(d); got != want {
			t.Errorf("%v: got %q want %q", d, got, want)
		}
		back, err := Parse(want)
		if err != nil || back != d {
			t.Errorf("%q parses back as %v, %v", want, back, err)
		}
	}
}
