package queue

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/kumogo/kumogo/internal/config"
)

// Backoff returns the delay before the next attempt after n failed attempts
// (n counted before this failure is added): retry_interval × 2^n, capped at
// max_retry_interval when set, without jitter.
func Backoff(cfg *config.QueueConfig, n int) time.Duration {
	base := cfg.RetryInterval
	if base <= 0 {
		base = time.Second
	}
	d := base
	for i := 0; i < n; i++ {
		if d > 1<<62/2 {
			break
		}
		d *= 2
		if cfg.MaxRetryInterval > 0 && d >= cfg.MaxRetryInterval {
			break
		}
	}
	if cfg.MaxRetryInterval > 0 && d > cfg.MaxRetryInterval {
		d = cfg.MaxRetryInterval
	}
	return d
}

// Jitter returns a uniformly random offset in ±J/2 where
// J = min(retry_interval/20, 60 s).
func Jitter(cfg *config.QueueConfig, r *rand.Rand) time.Duration {
	j := cfg.RetryInterval / 20
	if j > time.Minute {
		j = time.Minute
	}
	if j <= 0 {
		return 0
	}
	var x int64
	if r != nil {
		x = r.Int64N(int64(j) + 1)
	} else {
		x = rand.Int64N(int64(j) + 1)
	}
	return time.Duration(x) - j/2
}

// NextDelay is Backoff plus Jitter, never negative.
func NextDelay(cfg *config.QueueConfig, n int, r *rand.Rand) time.Duration {
	d := Backoff(cfg, n) + Jitter(cfg, r)
	if d < 0 {
		d = 0
	}
	return d
}

// ExpiryText is the response of an Expiration record when the next delivery
// would come too late.
func ExpiryText(delay, maxAge time.Duration) string {
	return fmt.Sprintf("Next delivery time would be %s after creation, which exceeds max_age=%s",
		humanDuration(delay), humanDuration(maxAge))
}

// InferAttempts reconstructs, after a restart, how many attempts a message
// of the given age has had: the number of successive backoff delays that fit
// into its age. It returns the attempts and how long from now the next
// attempt is due (zero when due now).
func InferAttempts(cfg *config.QueueConfig, age time.Duration) (attempts int, dueIn time.Duration) {
	var elapsed time.Duration
	for n := 0; n < 64; n++ {
		d := Backoff(cfg, n)
		if elapsed+d > age {
			return n, elapsed + d - age
		}
		elapsed += d
	}
	return 64, 0
}

// humanDuration renders durations the way KumoMTA's humantime does, e.g.
// "7days", "1h 20m", "20m".
func humanDuration(d time.Duration) string {
	if d <= 0 {
		return "0s"
	}
	units := []struct {
		n    time.Duration
		name string
	}{
		{24 * time.Hour, "days"}, {time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}, {time.Millisecond, "ms"},
	}
	out := ""
	for _, u := range units {
		if d >= u.n {
			v := d / u.n
			d -= v * u.n
			name := u.name
			if u.name == "days" && v == 1 {
				name = "day"
			}
			if out != "" {
				out += " "
			}
			out += fmt.Sprintf("%d%s", v, name)
		}
	}
	if out == "" {
		out = d.String()
	}
	return out
}
