// Package duration parses the duration values that KumoMTA policies use:
// numbers of seconds and humantime strings such as "5m", "1h 30m" or
// "7 days". It depends on the standard library only.
package duration

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
)

// Unit lengths that humantime uses for the calendar-ish units.
const (
	day   = 24 * time.Hour
	week  = 7 * day
	month = 2_630_016 * time.Second  // 30.44 days
	year  = 31_557_600 * time.Second // 365.25 days
)

// units maps every accepted unit spelling to its length. "M" (months) and
// "m" (minutes) are distinguished by case; everything else is matched as
// written (humantime is case sensitive too).
var units = map[string]time.Duration{
	"ns": time.Nanosecond, "nsec": time.Nanosecond, "nanos": time.Nanosecond,
	"us": time.Microsecond, "usec": time.Microsecond, "µs": time.Microsecond, "micros": time.Microsecond,
	"ms": time.Millisecond, "msec": time.Millisecond, "millis": time.Millisecond,
	"s": time.Second, "sec": time.Second, "secs": time.Second, "second": time.Second, "seconds": time.Second,
	"m": time.Minute, "min": time.Minute, "mins": time.Minute, "minute": time.Minute, "minutes": time.Minute,
	"h": time.Hour, "hr": time.Hour, "hrs": time.Hour, "hour": time.Hour, "hours": time.Hour,
	"d": day, "day": day, "days": day,
	"w": week, "week": week, "weeks": week,
	"M": month, "month": month, "months": month,
	"y": year, "year": year, "years": year,
}

// ErrEmpty is returned for an empty or blank duration string.
var ErrEmpty = errors.New("value was empty")

// Parse parses a humantime duration: one or more "<integer><unit>" terms,
// optionally separated by white space ("1h 30m", "20 minutes", "2min").
func Parse(s string) (time.Duration, error) {
	rest := strings.TrimSpace(s)
	if rest == "" {
		return 0, ErrEmpty
	}
	var total time.Duration
	for rest != "" {
		i := 0
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			i++
		}
		if i == 0 {
			return 0, fmt.Errorf("invalid duration %q: expected number at %q", s, rest)
		}
		var n int64
		for _, c := range rest[:i] {
			if n > (math.MaxInt64-9)/10 {
				return 0, fmt.Errorf("invalid duration %q: number is too large", s)
			}
			n = n*10 + int64(c-'0')
		}
		rest = strings.TrimLeft(rest[i:], " \t")
		j := 0
		for j < len(rest) && !(rest[j] >= '0' && rest[j] <= '9') && rest[j] != ' ' && rest[j] != '\t' {
			j++
		}
		if j == 0 {
			return 0, fmt.Errorf("invalid duration %q: time unit needed, for example %ds or %dm", s, n, n)
		}
		unit := rest[:j]
		d, ok := units[unit]
		if !ok {
			return 0, fmt.Errorf("invalid duration %q: unknown time unit %q, supported units: ns, us, ms, sec, min, hours, days, weeks, months, years (and few variations)", s, unit)
		}
		if n > int64(math.MaxInt64/d) {
			return 0, fmt.Errorf("invalid duration %q: duration is too long", s)
		}
		term := time.Duration(n) * d
		if total > math.MaxInt64-term {
			return 0, fmt.Errorf("invalid duration %q: duration is too long", s)
		}
		total += term
		rest = strings.TrimLeft(rest[j:], " \t")
	}
	return total, nil
}

// FromSeconds converts a number of seconds (integer or fractional) to a
// Duration. Negative, NaN and out-of-range values are errors.
func FromSeconds(secs float64) (time.Duration, error) {
	if math.IsNaN(secs) || secs < 0 {
		return 0, fmt.Errorf("invalid duration %v: must be a non-negative number of seconds", secs)
	}
	ns := secs * float64(time.Second)
	if ns >= math.MaxInt64 {
		return 0, fmt.Errorf("invalid duration %v: duration is too long", secs)
	}
	return time.Duration(math.Round(ns)), nil
}
