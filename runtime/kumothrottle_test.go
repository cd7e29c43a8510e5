package runtime

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/kumogo/kumogo/internal/message"
)

// TestMakeThrottle: throttles of one name share a GCRA bucket across Lua
// states; throttle() reports KumoMTA's fields; sleep_if_throttled waits;
// delay_message_if_throttled moves the message's due time.
func TestMakeThrottle(t *testing.T) {
	r := newRuntime(t, `
kumo.on('t', function(name, spec)
  local r = kumo.make_throttle(name, spec):throttle()
  return r.throttled, r.limit, r.remaining, r.retry_after
end)
kumo.on('sleep', function() return kumo.make_throttle('slow', '10/s,max_burst=1'):sleep_if_throttled() end)
kumo.on('delay', function(msg) return kumo.make_throttle('d', '1/hour'):delay_message_if_throttled(msg) end)
`)
	defer r.Close()
	ctx := context.Background()
	st1, _ := r.get(ctx) // hold a state so that the calls below use another
	out := run(t, r, "x", "2/minute")
	if out[0] != false || out[1] != int64(2) || out[2] != int64(1) || out[3] != nil {
		t.Fatalf("first: %v", out)
	}
	out = run(t, r, "x", "2/minute")
	if out[0] != false || out[2] != int64(0) {
		t.Fatalf("second: %v", out)
	}
	r.put(st1, nil)
	out = run(t, r, "x", "2/minute")
	if out[0] != true || out[3] == nil {
		t.Fatalf("third: %v", out)
	}
	if ra, _ := out[3].(float64); ra < 20 || ra > 31 {
		t.Fatalf("retry_after %v", out[3])
	}
	out = run(t, r, "y", "2/minute") // another name: its own bucket
	if out[0] != false {
		t.Fatalf("other name: %v", out)
	}

	start := time.Now()
	first, err := r.Call(ctx, "sleep")
	if err != nil || first[0] != false {
		t.Fatalf("sleep 1: %v %v", first, err)
	}
	second, err := r.Call(ctx, "sleep")
	if err != nil || second[0] != true || time.Since(start) < 80*time.Millisecond {
		t.Fatalf("sleep 2: %v %v after %v", second, err, time.Since(start))
	}

	msg := message.New(message.NewIDGenerator(), message.Address{User: "a", Domain: "x"}, []message.Address{{User: "b", Domain: "y"}}, []byte("Subject: x\r\n\r\nx\r\n"))
	if out, err := r.Call(ctx, "delay", msg); err != nil || out[0] != false {
		t.Fatalf("delay 1: %v %v", out, err)
	}
	if out, err := r.Call(ctx, "delay", msg); err != nil || out[0] != true {
		t.Fatalf("delay 2: %v %v", out, err)
	}
	if d := time.Until(msg.Due()); d < 50*time.Minute {
		t.Fatalf("due in %v", d)
	}
	if _, err := r.Call(ctx, "t", "z", "ten per second"); err == nil || !strings.Contains(err.Error(), "make_throttle") {
		t.Fatalf("bad spec: %v", err)
	}
}
