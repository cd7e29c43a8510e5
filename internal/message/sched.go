package message

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Sched is a message's in-memory delivery scheduling state: attempts so
// far, the next due time and the constraints of msg:set_scheduling. Like
// KumoMTA's, it is not stored with the message: after a restart the
// queue infers attempts from the message age.
type Sched struct {
	attempts   int
	due        time.Time
	scheduling *Scheduling
}

// Attempts returns the number of delivery attempts made so far.
func (m *Message) Attempts() int { return m.sched.attempts }

// SetAttempts sets the number of delivery attempts (negative counts as 0).
func (m *Message) SetAttempts(n int) { m.sched.attempts = max(n, 0) }

// IncrementAttempts adds one attempt and returns the new count.
func (m *Message) IncrementAttempts() int {
	m.sched.attempts++
	return m.sched.attempts
}

// Due returns the time of the next delivery attempt; the zero time means
// as soon as possible.
func (m *Message) Due() time.Time { return m.sched.due }

// SetDue sets the time of the next delivery attempt (zero: as soon as
// possible).
func (m *Message) SetDue(t time.Time) { m.sched.due = t }

// Scheduling returns the constraints set by msg:set_scheduling, or nil.
// The value must not be modified; use SetScheduling.
func (m *Message) Scheduling() *Scheduling { return m.sched.scheduling }

// SetScheduling replaces the scheduling constraints (nil clears them).
func (m *Message) SetScheduling(s *Scheduling) { m.sched.scheduling = s }

// Scheduling holds KumoMTA's per-message scheduling constraints.
type Scheduling struct {
	// FirstAttempt defers the first delivery attempt (zero: none).
	FirstAttempt time.Time
	// Expires replaces the queue's max_age for this message (zero: none).
	Expires time.Time
	// Window restricts delivery to days of the week and a time of day.
	Window *DeliveryWindow
}

// DeliveryWindow is a constrained delivery time: on the days of the week
// in Days, between Start and End (offsets from midnight) in Location.
type DeliveryWindow struct {
	Days     [7]bool // indexed by time.Weekday
	DOW      string  // as given, e.g. "Mon,Tue,Wed"
	TZ       string
	Location *time.Location
	Start    time.Duration
	End      time.Duration
}

var weekdays = map[string]time.Weekday{
	"sun": time.Sunday, "sunday": time.Sunday,
	"mon": time.Monday, "monday": time.Monday,
	"tue": time.Tuesday, "tuesday": time.Tuesday,
	"wed": time.Wednesday, "wednesday": time.Wednesday,
	"thu": time.Thursday, "thursday": time.Thursday,
	"fri": time.Friday, "friday": time.Friday,
	"sat": time.Saturday, "saturday": time.Saturday,
}

// ParseDeliveryWindow parses the dow ("Mon,Wed" or "Mon-Fri"), tz (IANA
// name) and start/end ("HH:MM" or "HH:MM:SS") of set_scheduling.
func ParseDeliveryWindow(dow, tz, start, end string) (*DeliveryWindow, error) {
	w := &DeliveryWindow{DOW: dow, TZ: tz}
	found := false
	for _, part := range strings.Split(dow, ",") {
		part = strings.ToLower(strings.TrimSpace(part))
		if part == "" {
			continue
		}
		from, to, isRange := strings.Cut(part, "-")
		a, ok := weekdays[strings.TrimSpace(from)]
		if !ok {
			return nil, fmt.Errorf("dow %q: unknown day %q", dow, from)
		}
		b := a
		if isRange {
			if b, ok = weekdays[strings.TrimSpace(to)]; !ok {
				return nil, fmt.Errorf("dow %q: unknown day %q", dow, to)
			}
		}
		for d := a; ; d = (d + 1) % 7 {
			w.Days[d] = true
			found = true
			if d == b {
				break
			}
		}
	}
	if !found {
		return nil, fmt.Errorf("dow %q: no days given", dow)
	}
	loc, err := time.LoadLocation(tz)
	if err != nil {
		return nil, fmt.Errorf("tz %q: %w", tz, err)
	}
	w.Location = loc
	if w.Start, err = parseTimeOfDay(start); err != nil {
		return nil, fmt.Errorf("start: %w", err)
	}
	if w.End, err = parseTimeOfDay(end); err != nil {
		return nil, fmt.Errorf("end: %w", err)
	}
	if w.End <= w.Start {
		return nil, fmt.Errorf("end %q must be after start %q", end, start)
	}
	return w, nil
}

func parseTimeOfDay(s string) (time.Duration, error) {
	for _, layout := range []string{"15:04:05", "15:04"} {
		if t, err := time.Parse(layout, strings.TrimSpace(s)); err == nil {
			return time.Duration(t.Hour())*time.Hour + time.Duration(t.Minute())*time.Minute + time.Duration(t.Second())*time.Second, nil
		}
	}
	return 0, fmt.Errorf("%q is not a time of day (HH:MM or HH:MM:SS)", s)
}

// Adjust returns t if it falls inside the window, otherwise the start of
// the next window after t.
func (w *DeliveryWindow) Adjust(t time.Time) time.Time {
	lt := t.In(w.Location)
	for i := 0; i < 8; i++ {
		day := time.Date(lt.Year(), lt.Month(), lt.Day()+i, 0, 0, 0, 0, w.Location)
		if !w.Days[day.Weekday()] {
			continue
		}
		from := w.at(day, w.Start)
		to := w.at(day, w.End)
		if i == 0 {
			if !lt.Before(from) && lt.Before(to) {
				return t
			}
			if !lt.Before(to) {
				continue
			}
		}
		return from.In(t.Location())
	}
	return t // no day enabled: cannot happen for a parsed window
}

// at is the wall-clock time of day off on day (correct across DST
// changes).
func (w *DeliveryWindow) at(day time.Time, off time.Duration) time.Time {
	h := int(off / time.Hour)
	m := int(off % time.Hour / time.Minute)
	sec := int(off % time.Minute / time.Second)
	return time.Date(day.Year(), day.Month(), day.Day(), h, m, sec, 0, w.Location)
}

// AdjustDue applies the delivery window (if any) to a candidate due time.
func (s *Scheduling) AdjustDue(t time.Time) time.Time {
	if s == nil || s.Window == nil {
		return t
	}
	return s.Window.Adjust(t)
}

// ErrExpired is returned by CheckExpiry when the next due time is at or
// after the Expires time of set_scheduling.
var ErrExpired = errors.New("next delivery time exceeds the expiry time configured via set_scheduling")

// CheckExpiry reports ErrExpired when Expires is set and due is not
// before it.
func (s *Scheduling) CheckExpiry(due time.Time) error {
	if s == nil || s.Expires.IsZero() || due.Before(s.Expires) {
		return nil
	}
	return ErrExpired
}
