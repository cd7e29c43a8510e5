package queue

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/kumogo/kumogo/internal/config"
)

func TestBackoff(t *testing.T) {
	cfg := config.DefaultQueueConfig()
	want := []time.Duration{20 * time.Minute, 40 * time.Minute, 80 * time.Minute, 160 * time.Minute}
	for n, w := range want {
		if got := Backoff(&cfg, n); got != w {
			t.Errorf("n=%d: %v want %v", n, got, w)
		}
	}
	cfg.MaxRetryInterval = time.Hour
	want = []time.Duration{20 * time.Minute, 40 * time.Minute, time.Hour, time.Hour, time.Hour}
	for n, w := range want {
		if got := Backoff(&cfg, n); got != w {
			t.Errorf("capped n=%d: %v want %v", n, got, w)
		}
	}
	if got := Backoff(&cfg, 1000); got != time.Hour {
		t.Errorf("huge n: %v", got)
	}
}

func TestJitterBounds(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	cfg := config.DefaultQueueConfig() // J = 60 s
	lo, hi := time.Hour, -time.Hour
	for i := 0; i < 10000; i++ {
		j := Jitter(&cfg, r)
		if j < -30*time.Second || j > 30*time.Second {
			t.Fatalf("jitter %v out of ±30s", j)
		}
		lo, hi = min(lo, j), max(hi, j)
	}
	if lo > -25*time.Second || hi < 25*time.Second {
		t.Fatalf("jitter does not cover its range: %v..%v", lo, hi)
	}
	cfg.RetryInterval = 5 * time.Second // J = 250 ms
	for i := 0; i < 1000; i++ {
		if d := NextDelay(&cfg, 1, r); d < 10*time.Second-125*time.Millisecond || d > 10*time.Second+125*time.Millisecond {
			t.Fatalf("delay %v", d)
		}
	}
}

func TestInferAttempts(t *testing.T) {
	cfg := config.DefaultQueueConfig()
	for _, tc := range []struct {
		age      time.Duration
		attempts int
		dueIn    time.Duration
	}{
		{0, 0, 20 * time.Minute},
		{10 * time.Minute, 0, 10 * time.Minute},
		{25 * time.Minute, 1, 35 * time.Minute},   // 20 fits; next at 20+40=60
		{60 * time.Minute, 2, 80 * time.Minute},   // 20+40 fit; next at 140
		{150 * time.Minute, 3, 150 * time.Minute}, // 20+40+80 fit; next at 300
	} {
		a, d := InferAttempts(&cfg, tc.age)
		if a != tc.attempts || d != tc.dueIn {
			t.Errorf("age %v: attempts %d due in %v, want %d %v", tc.age, a, d, tc.attempts, tc.dueIn)
		}
	}
}

func TestExpiryText(t *testing.T) {
	got := ExpiryText(8*24*time.Hour+time.Hour, 7*24*time.Hour)
	if got != "Next delivery time would be 8days 1h after creation, which exceeds max_age=7days" {
		t.Fatal(got)
	}
}
