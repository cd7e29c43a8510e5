package runtime

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/kumogo/kumogo/internal/message"
)

func TestMessageAttemptsAndDue(t *testing.T) {
	r := newRuntime(t, `
kumo.on('t', function(msg, what, arg)
  if what == 'attempts' then
    local before = msg:num_attempts()
    msg:increment_num_attempts()
    msg:increment_num_attempts()
    return before, msg:num_attempts()
  elseif what == 'due' then
    msg:set_due(arg)
  end
end)
`)
	msg := testMessage(t, "Subject: x\r\n\r\nbody\r\n", "rcpt@example.com")
	msg.SetAttempts(3)
	out := run(t, r, msg, "attempts")
	if out[0] != int64(3) || out[1] != int64(5) || msg.Attempts() != 5 {
		t.Fatalf("attempts: %v, %d", out, msg.Attempts())
	}
	run(t, r, msg, "due", "2030-03-08T17:51:42.481711Z")
	if want := time.Date(2030, 3, 8, 17, 51, 42, 481711000, time.UTC); !msg.Due().Equal(want) {
		t.Fatalf("due = %v", msg.Due())
	}
	run(t, r, msg, "due", "2030-03-08T10:00:00-08:00")
	if want := time.Date(2030, 3, 8, 18, 0, 0, 0, time.UTC); !msg.Due().Equal(want) {
		t.Fatalf("due = %v", msg.Due())
	}
	run(t, r, msg, "due", nil)
	if !msg.Due().IsZero() {
		t.Fatalf("due = %v", msg.Due())
	}
	for _, bad := range []any{"tomorrow", int64(5)} {
		if _, err := r.Call(context.Background(), "t", msg, "due", bad); err == nil {
			t.Fatalf("set_due(%v): no error", bad)
		}
	}
}

func TestSetScheduling(t *testing.T) {
	r := newRuntime(t, `
kumo.on('t', function(msg, what)
  if what == 'first' then
    local s = msg:set_scheduling{ first_attempt = '2030-01-02T10:00:00Z', expires = '2030-01-09T10:00:00Z' }
    assert(s.first_attempt == '2030-01-02T10:00:00Z', s.first_attempt)
    assert(s.expires == '2030-01-09T10:00:00Z')
    assert(s.dow == nil)
  elseif what == 'window' then
    local s = msg:set_scheduling{ dow = 'Mon,Wed', tz = 'America/Phoenix', start = '09:00', ['end'] = '17:00:00',
      first_attempt = '2030-01-05T12:00:00Z' }
    assert(s.dow == 'Mon,Wed' and s.tz == 'America/Phoenix' and s.start == '09:00:00' and s['end'] == '17:00:00')
  elseif what == 'clear' then
    assert(msg:set_scheduling(nil) == nil)
  elseif what == 'partial' then
    msg:set_scheduling{ dow = 'Mon' }
  elseif what == 'unknown' then
    msg:set_scheduling{ first = '2030-01-01T00:00:00Z' }
  elseif what == 'badtime' then
    msg:set_scheduling{ expires = 'next week' }
  elseif what == 'badday' then
    msg:set_scheduling{ dow = 'Funday', tz = 'UTC', start = '09:00', ['end'] = '10:00' }
  elseif what == 'badtz' then
    msg:set_scheduling{ dow = 'Mon', tz = 'Mars/Olympus', start = '09:00', ['end'] = '10:00' }
  elseif what == 'import' then
    return msg:import_scheduling_header('X-Schedule', true)
  elseif what == 'import_keep' then
    return msg:import_scheduling_header('X-Schedule')
  end
end)
`)
	msg := testMessage(t, "X-Schedule: {\"first_attempt\": \"2030-02-01T08:00:00Z\", \"dow\": \"Mon-Fri\", \"tz\": \"UTC\", \"start\": \"09:00\", \"end\": \"17:00\"}\r\nSubject: x\r\n\r\nbody\r\n", "rcpt@example.com")
	run(t, r, msg, "first")
	s := msg.Scheduling()
	if s == nil || !s.FirstAttempt.Equal(time.Date(2030, 1, 2, 10, 0, 0, 0, time.UTC)) || !s.Expires.Equal(time.Date(2030, 1, 9, 10, 0, 0, 0, time.UTC)) || s.Window != nil {
		t.Fatalf("scheduling = %+v", s)
	}
	if !msg.Due().Equal(s.FirstAttempt) {
		t.Fatalf("due = %v", msg.Due())
	}
	if err := s.CheckExpiry(s.Expires); err != message.ErrExpired {
		t.Fatalf("CheckExpiry(expires) = %v", err)
	}
	if err := s.CheckExpiry(s.Expires.Add(-time.Second)); err != nil {
		t.Fatalf("CheckExpiry(before) = %v", err)
	}

	// 2030-01-05 is a Saturday; 12:00Z is 05:00 in Phoenix (UTC-7): the
	// next window opens Monday 2030-01-07 09:00 local = 16:00Z.
	run(t, r, msg, "window")
	if want := time.Date(2030, 1, 7, 16, 0, 0, 0, time.UTC); !msg.Due().Equal(want) {
		t.Fatalf("window due = %v, want %v", msg.Due().UTC(), want)
	}
	w := msg.Scheduling().Window
	inside := time.Date(2030, 1, 9, 20, 0, 0, 0, time.UTC) // Wed 13:00 local
	if got := w.Adjust(inside); !got.Equal(inside) {
		t.Fatalf("inside moved to %v", got)
	}
	after := time.Date(2030, 1, 9, 23, 30, 0, 0, time.UTC) // Wed 16:30 local → inside
	if got := w.Adjust(after); !got.Equal(after) {
		t.Fatalf("16:30 moved to %v", got)
	}
	late := time.Date(2030, 1, 10, 1, 0, 0, 0, time.UTC) // Wed 18:00 local → Mon 09:00
	if got := w.Adjust(late); !got.Equal(time.Date(2030, 1, 14, 16, 0, 0, 0, time.UTC)) {
		t.Fatalf("late moved to %v", got.UTC())
	}

	run(t, r, msg, "clear")
	if msg.Scheduling() != nil {
		t.Fatal("not cleared")
	}
	for what, want := range map[string]string{
		"partial": "dow, tz, start and end must be given together",
		"unknown": "unknown field `first`, expected one of `first_attempt`",
		"badtime": `invalid value: string "next week", expected an ISO 8601 date and time`,
		"badday":  `unknown day "funday"`,
		"badtz":   `tz "Mars/Olympus"`,
	} {
		if _, err := r.Call(context.Background(), "t", msg, what); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v want %q", what, err, want)
		}
	}

	out := run(t, r, msg, "import_keep")
	if m, ok := out[0].(map[string]any); !ok || m["dow"] != "Mon-Fri" || m["start"] != "09:00:00" {
		t.Fatalf("import: %v", out)
	}
	if _, ok := msg.FirstHeader("X-Schedule"); !ok {
		t.Fatal("header removed without remove=true")
	}
	run(t, r, msg, "import")
	if _, ok := msg.FirstHeader("X-Schedule"); ok {
		t.Fatal("header not removed")
	}
	// Friday 2030-02-01 08:00Z is before the 09:00 UTC opening that day.
	if want := time.Date(2030, 2, 1, 9, 0, 0, 0, time.UTC); !msg.Due().Equal(want) {
		t.Fatalf("import due = %v", msg.Due())
	}
	if out := run(t, r, msg, "import"); len(out) != 0 && out[0] != nil {
		t.Fatalf("absent header: %v", out)
	}

	bad := testMessage(t, "X-Schedule: {nope\r\n\r\nbody\r\n", "rcpt@example.com")
	if _, err := r.Call(context.Background(), "t", bad, "import"); err == nil || !strings.Contains(err.Error(), "invalid JSON") {
		t.Fatalf("bad JSON: %v", err)
	}
}
