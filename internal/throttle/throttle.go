// Package throttle parses KumoMTA throttle specs
// ("[local:]QUANTITY/[N]PERIOD[,max_burst=B]") and limits a rate with the
// generic cell rate algorithm (GCRA).
//
// A Spec allows Limit events per Period with bursts of up to Burst events
// (the quantity unless max_burst says otherwise). A Limiter holds the GCRA
// state of one bucket; it is safe for concurrent use and takes the current
// time as an argument where a test needs to control it.
package throttle

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Spec is a parsed throttle spec.
type Spec struct {
	// Limit is the number of events allowed per Period.
	Limit uint64
	// Period is the length of the window, a whole number of seconds.
	Period time.Duration
	// MaxBurst is the max_burst option; 0 means "same as Limit".
	MaxBurst uint64
	// Local is set by the "local:" prefix: the bucket is never shared
	// between nodes even when shared throttles are configured.
	Local bool
}

var units = map[string]time.Duration{
	"s": time.Second, "sec": time.Second, "secs": time.Second, "second": time.Second, "seconds": time.Second,
	"m": time.Minute, "min": time.Minute, "mins": time.Minute, "minute": time.Minute, "minutes": time.Minute,
	"h": time.Hour, "hr": time.Hour, "hrs": time.Hour, "hour": time.Hour, "hours": time.Hour,
	"d": 24 * time.Hour, "day": 24 * time.Hour, "days": 24 * time.Hour,
}

// Parse parses a throttle spec such as "10/s", "1,000/hour", "20/30minute"
// or "local:5/m,max_burst=10". Quantities may use ',' or '_' as digit
// separators.
func Parse(spec string) (Spec, error) {
	var s Spec
	rest := strings.TrimSpace(spec)
	if r, ok := strings.CutPrefix(rest, "local:"); ok {
		s.Local = true
		rest = r
	}
	rate, opts, hasOpts := strings.Cut(rest, ",max_burst=")
	if hasOpts {
		b, err := parseQuantity(opts)
		if err != nil {
			return Spec{}, fmt.Errorf("throttle spec %q: max_burst: %w", spec, err)
		}
		s.MaxBurst = b
	}
	qty, period, ok := strings.Cut(rate, "/")
	if !ok {
		return Spec{}, fmt.Errorf("throttle spec %q: expected QUANTITY/PERIOD", spec)
	}
	n, err := parseQuantity(qty)
	if err != nil {
		return Spec{}, fmt.Errorf("throttle spec %q: quantity: %w", spec, err)
	}
	s.Limit = n
	p, err := parsePeriod(period)
	if err != nil {
		return Spec{}, fmt.Errorf("throttle spec %q: period: %w", spec, err)
	}
	s.Period = p
	return s, nil
}

// parseQuantity parses a positive integer that may contain ',' or '_'
// digit separators (a quantity with ',' in it can only be followed by an
// option through ",max_burst=", which the caller has already split off).
func parseQuantity(q string) (uint64, error) {
	digits := strings.NewReplacer(",", "", "_", "").Replace(strings.TrimSpace(q))
	if digits == "" {
		return 0, errors.New("empty")
	}
	n, err := strconv.ParseUint(digits, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a whole number", q)
	}
	if n == 0 {
		return 0, errors.New("must be greater than zero")
	}
	return n, nil
}

// parsePeriod parses "[N]UNIT".
func parsePeriod(p string) (time.Duration, error) {
	p = strings.TrimSpace(p)
	i := 0
	for i < len(p) && p[i] >= '0' && p[i] <= '9' {
		i++
	}
	mult := uint64(1)
	if i > 0 {
		m, err := strconv.ParseUint(p[:i], 10, 32)
		if err != nil || m == 0 {
			return 0, fmt.Errorf("bad multiplier %q", p[:i])
		}
		mult = m
	}
	unit, ok := units[strings.ToLower(strings.TrimSpace(p[i:]))]
	if !ok {
		return 0, fmt.Errorf("unknown unit %q (want s, m, h or d)", p[i:])
	}
	return time.Duration(mult) * unit, nil
}

// Burst returns the largest number of events allowed at once: MaxBurst,
// or Limit when MaxBurst is unset.
func (s Spec) Burst() uint64 {
	if s.MaxBurst > 0 {
		return s.MaxBurst
	}
	return s.Limit
}

// Interval returns the emission interval, Period / Limit (at least 1 ns).
func (s Spec) Interval() time.Duration {
	if s.Limit == 0 {
		return s.Period
	}
	iv := s.Period / time.Duration(s.Limit)
	if iv <= 0 {
		iv = 1
	}
	return iv
}

// PerSecond returns the steady rate in events per second.
func (s Spec) PerSecond() float64 {
	return float64(s.Limit) / s.Period.Seconds()
}

// String returns the spec in canonical form, e.g. "local:20/30m,max_burst=5".
func (s Spec) String() string {
	var b strings.Builder
	if s.Local {
		b.WriteString("local:")
	}
	b.WriteString(strconv.FormatUint(s.Limit, 10))
	b.WriteByte('/')
	secs := int64(s.Period / time.Second)
	switch {
	case secs%86400 == 0:
		writePeriod(&b, secs/86400, "d")
	case secs%3600 == 0:
		writePeriod(&b, secs/3600, "h")
	case secs%60 == 0:
		writePeriod(&b, secs/60, "m")
	default:
		writePeriod(&b, secs, "s")
	}
	if s.MaxBurst > 0 {
		b.WriteString(",max_burst=")
		b.WriteString(strconv.FormatUint(s.MaxBurst, 10))
	}
	return b.String()
}

func writePeriod(b *strings.Builder, n int64, unit string) {
	if n != 1 {
		b.WriteString(strconv.FormatInt(n, 10))
	}
	b.WriteString(unit)
}

// Result is the outcome of one throttle check.
type Result struct {
	// Throttled is true when the event does not conform and was not counted.
	Throttled bool
	// Limit is the burst size of the bucket.
	Limit uint64
	// Remaining is how many more events would conform right now.
	Remaining uint64
	// ResetAfter is how long until the bucket is empty again.
	ResetAfter time.Duration
	// RetryAfter is how long to wait before the event would conform
	// (0 when not throttled).
	RetryAfter time.Duration
}

// Limiter applies a Spec with GCRA. The zero value is not usable; use
// NewLimiter.
type Limiter struct {
	interval  int64 // emission interval, ns
	tolerance int64 // interval * burst, ns
	burst     uint64

	mu  sync.Mutex
	tat int64 // theoretical arrival time, unix ns
}

// NewLimiter returns a limiter for spec.
func NewLimiter(spec Spec) *Limiter {
	iv := int64(spec.Interval())
	b := spec.Burst()
	if b == 0 {
		b = 1
	}
	return &Limiter{interval: iv, tolerance: iv * int64(b), burst: b}
}

// Rested reports whether the limiter is back to its initial state at now
// (a full burst available), so that dropping it and starting a new one
// changes nothing.
func (l *Limiter) Rested(now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.tat <= now.UnixNano()
}

// Allow checks one event at time.Now.
func (l *Limiter) Allow() Result { return l.AllowAt(time.Now()) }

// AllowAt checks one event at now. A conforming event is counted; a
// throttled one is not, and RetryAfter tells when it would conform.
func (l *Limiter) AllowAt(now time.Time) Result {
	t := now.UnixNano()
	l.mu.Lock()
	defer l.mu.Unlock()
	tat := max(l.tat, t)
	newTAT := tat + l.interval
	allowAt := newTAT - l.tolerance
	if t < allowAt {
		return Result{
			Throttled:  true,
			Limit:      l.burst,
			RetryAfter: time.Duration(allowAt - t),
			ResetAfter: time.Duration(tat - t),
		}
	}
	l.tat = newTAT
	return Result{
		Limit:      l.burst,
		Remaining:  uint64((t - allowAt) / l.interval),
		ResetAfter: time.Duration(newTAT - t),
	}
}

// ReserveAt books the next slot for one event at now and returns how long
// the caller must wait before acting (0 when the event conforms now).
// Unlike AllowAt the event is always counted, so concurrent callers queue
// up in order instead of retrying together.
func (l *Limiter) ReserveAt(now time.Time) time.Duration {
	t := now.UnixNano()
	l.mu.Lock()
	defer l.mu.Unlock()
	tat := max(l.tat, t)
	l.tat = tat + l.interval
	if wait := l.tat - l.tolerance - t; wait > 0 {
		return time.Duration(wait)
	}
	return 0
}
