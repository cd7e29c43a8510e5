package smtpd

import (
	"context"
	"testing"
	"time"

	"github.com/kumogo/kumogo/internal/message"
)

func TestCallCtxRearm(t *testing.T) {
	c := newCallCtx()
	for i := 0; i < 1000; i++ {
		c.arm(time.Millisecond)
		if c.Err() != nil {
			t.Fatalf("call %d: fresh context already expired", i)
		}
		if dl, ok := c.Deadline(); !ok || time.Until(dl) > time.Millisecond {
			t.Fatalf("deadline %v %v", dl, ok)
		}
		if c.disarm() {
			// the timer won the race; a session would replace c now
			select {
			case <-c.Done():
			default:
				t.Fatal("expired but Done is open")
			}
			c = newCallCtx()
		}
	}
	// a stale timer run after disarm does not cancel the next call
	c.arm(time.Hour)
	c.disarm()
	c.fire()
	c.arm(time.Hour)
	c.fire()
	if c.Err() != nil {
		t.Fatal("stale fire expired a fresh call")
	}
	c.disarm()

	c.arm(20 * time.Millisecond)
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("deadline never fired")
	}
	if c.Err() != context.DeadlineExceeded || !c.disarm() {
		t.Fatalf("err %v", c.Err())
	}
}

// A transaction that hits data_processing_timeout is followed on the same
// session by ones that get a fresh, unexpired context.
func TestDataProcessingTimeoutThenNextMessage(t *testing.T) {
	n := 0
	p := &fakePolicy{receivedCtx: func(ctx context.Context, m *message.Message) error {
		n++
		if n == 1 {
			<-ctx.Done()
			return ctx.Err()
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if dl, ok := ctx.Deadline(); !ok || time.Until(dl) < 250*time.Millisecond {
			t.Errorf("message %d: deadline %v %v", n, dl, ok)
		}
		m.SetMeta("queue", "null")
		return nil
	}}
	cfg := testConfig()
	cfg.DataProcessingTimeout = 500 * time.Millisecond
	ts := startServer(t, cfg, p)
	c := greet(t, ts.addr)
	if resp := sendMessage(t, c, "a@x.com", "b@y.com", "x\r\n"); resp != "451 4.4.5 data_processing_timeout exceeded (rx)" {
		t.Fatal(resp)
	}
	for i := 0; i < 3; i++ {
		if resp := sendMessage(t, c, "a@x.com", "b@y.com", "x\r\n"); !idsRe.MatchString(resp) {
			t.Fatal(resp)
		}
	}
}
