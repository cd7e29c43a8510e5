package duration

import (
	"strconv"
	"strings"
	"time"
)

// Format renders d the way humantime does ("20m", "7days",
// "1h 30m", "1s 500ms"); Parse reads it back exactly.
func Format(d time.Duration) string {
	if d <= 0 {
		return "0s"
	}
	units := []struct {
		len         time.Duration
		one, plural string
	}{
		{year, "year", "years"},
		{month, "month", "months"},
		{day, "day", "days"},
		{time.Hour, "h", "h"},
		{time.Minute, "m", "m"},
		{time.Second, "s", "s"},
		{time.Millisecond, "ms", "ms"},
		{time.Microsecond, "us", "us"},
		{time.Nanosecond, "ns", "ns"},
	}
	var b strings.Builder
	for _, u := range units {
		n := d / u.len
		if n == 0 {
			continue
		}
		d -= n * u.len
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(strconv.FormatInt(int64(n), 10))
		if n == 1 {
			b.WriteString(u.one)
		} else {
			b.WriteString(u.plural)
		}
	}
	return b.String()
}
