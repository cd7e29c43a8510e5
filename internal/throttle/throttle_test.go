package throttle

import (
	"strings"
	"sync"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	cases := []struct {
		in   string
		want Spec
		str  string
	}{
		{"10/s", Spec{Limit: 10, Period: time.Second}, "10/s"},
		{"10/sec", Spec{Limit: 10, Period: time.Second}, "10/s"},
		{"10/seconds", Spec{Limit: 10, Period: time.Second}, "10/s"},
		{"1,000/hour", Spec{Limit: 1000, Period: time.Hour}, "1000/h"},
		{"1_000/hr", Spec{Limit: 1000, Period: time.Hour}, "1000/h"},
		{"20/30minute", Spec{Limit: 20, Period: 30 * time.Minute}, "20/30m"},
		{"20/90s", Spec{Limit: 20, Period: 90 * time.Second}, "20/90s"},
		{"5/min", Spec{Limit: 5, Period: time.Minute}, "5/m"},
		{"100/day", Spec{Limit: 100, Period: 24 * time.Hour}, "100/d"},
		{"100/2d", Spec{Limit: 100, Period: 48 * time.Hour}, "100/2d"},
		{"local:5/m,max_burst=10", Spec{Limit: 5, Period: time.Minute, MaxBurst: 10, Local: true}, "local:5/m,max_burst=10"},
		{"1,000/h,max_burst=1,000", Spec{Limit: 1000, Period: time.Hour, MaxBurst: 1000}, "1000/h,max_burst=1000"},
		{" 50/s ", Spec{Limit: 50, Period: time.Second}, "50/s"},
	}
	for _, c := range cases {
		got, err := Parse(c.in)
		if err != nil {
			t.Errorf("Parse(%q): %v", c.in, err)
			continue
		}
		if got != c.want {
			t.Errorf("Parse(%q) = %+v, want %+v", c.in, got, c.want)
		}
		if got.String() != c.str {
			t.Errorf("Parse(%q).String() = %q, want %q", c.in, got.String(), c.str)
		}
		if again, err := Parse(got.String()); err != nil || again != got {
			t.Errorf("round trip of %q: %+v, %v", c.in, again, err)
		}
	}
}

func TestParseErrors(t *testing.T) {
	cases := map[string]string{
		"":                    "QUANTITY/PERIOD",
		"10":                  "QUANTITY/PERIOD",
		"/s":                  "quantity",
		"x/s":                 "quantity",
		"0/s":                 "greater than zero",
		"-1/s":                "quantity",
		"10/":                 "unknown unit",
		"10/fortnight":        "unknown unit",
		"10/0s":               "multiplier",
		"10/1.5s":             "unknown unit",
		"10/s,max_burst=":     "max_burst",
		"10/s,max_burst=zero": "max_burst",
		"10/s,max_burst=0":    "max_burst",
		"10/s,burst=3":        "period",
		"remote:10/s":         "quantity",
	}
	for in, want := range cases {
		_, err := Parse(in)
		if err == nil {
			t.Errorf("Parse(%q): no error", in)
			continue
		}
		if !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "throttle spec") {
			t.Errorf("Parse(%q) error %q, want it to mention %q", in, err, want)
		}
	}
}

func TestSpecDerived(t *testing.T) {
	s, _ := Parse("20/30minute")
	if s.Burst() != 20 {
		t.Errorf("burst %d", s.Burst())
	}
	if s.Interval() != 90*time.Second {
		t.Errorf("interval %v", s.Interval())
	}
	if got := s.PerSecond(); got < 0.0111 || got > 0.0112 {
		t.Errorf("per second %v", got)
	}
	s, _ = Parse("local:5/m,max_burst=10")
	if s.Burst() != 10 {
		t.Errorf("burst %d", s.Burst())
	}
}

func TestAllowBurstThenSteady(t *testing.T) {
	s, _ := Parse("10/s,max_burst=3")
	l := NewLimiter(s)
	now := time.Unix(1000, 0)
	for i := range 3 {
		r := l.AllowAt(now)
		if r.Throttled {
			t.Fatalf("event %d throttled inside the burst", i)
		}
		if r.Remaining != uint64(2-i) {
			t.Errorf("event %d remaining %d", i, r.Remaining)
		}
	}
	r := l.AllowAt(now)
	if !r.Throttled || r.RetryAfter != 100*time.Millisecond {
		t.Fatalf("4th event: %+v", r)
	}
	// a throttled event is not counted: retrying at RetryAfter conforms
	if r := l.AllowAt(now.Add(100 * time.Millisecond)); r.Throttled {
		t.Fatalf("after retry_after: %+v", r)
	}
	if r := l.AllowAt(now.Add(150 * time.Millisecond)); !r.Throttled || r.RetryAfter != 50*time.Millisecond {
		t.Fatalf("between slots: %+v", r)
	}
	// steady state: one event per 100 ms
	n := 0
	for ms := 200; ms < 1200; ms++ {
		if !l.AllowAt(now.Add(time.Duration(ms) * time.Millisecond)).Throttled {
			n++
		}
	}
	if n != 10 {
		t.Errorf("%d events over one second at 10/s, want 10", n)
	}
}

func TestAllowDefaultBurstIsQuantity(t *testing.T) {
	l := NewLimiter(Spec{Limit: 50, Period: time.Second})
	now := time.Unix(5, 0)
	n := 0
	for range 100 {
		if !l.AllowAt(now).Throttled {
			n++
		}
	}
	if n != 50 {
		t.Errorf("%d events at once, want the burst of 50", n)
	}
	// the bucket drains fully after one period
	if r := l.AllowAt(now.Add(time.Second)); r.Throttled || r.Remaining != 49 {
		t.Errorf("after a period: %+v", r)
	}
}

func TestReserveQueuesCallers(t *testing.T) {
	l := NewLimiter(Spec{Limit: 10, Period: time.Second, MaxBurst: 2})
	now := time.Unix(0, 0)
	want := []time.Duration{0, 0, 100 * time.Millisecond, 200 * time.Millisecond, 300 * time.Millisecond}
	for i, w := range want {
		if got := l.ReserveAt(now); got != w {
			t.Errorf("reservation %d: wait %v, want %v", i, got, w)
		}
	}
}

func TestLimiterConcurrent(t *testing.T) {
	l := NewLimiter(Spec{Limit: 1000, Period: time.Second})
	now := time.Unix(0, 0)
	var mu sync.Mutex
	ok := 0
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 500 {
				if !l.AllowAt(now).Throttled {
					mu.Lock()
					ok++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if ok != 1000 {
		t.Errorf("%d conforming events, want 1000", ok)
	}
}
