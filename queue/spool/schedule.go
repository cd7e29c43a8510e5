package spool

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/kumogo/kumogo/internal/message"
)

// scheduleRecord is the "schedule" object of the meta record: the
// message's set_scheduling constraints, so that they survive a restart.
type scheduleRecord struct {
	FirstAttempt string             `json:"first_attempt,omitempty"`
	Expires      string             `json:"expires,omitempty"`
	Restriction  *restrictionRecord `json:"restriction,omitempty"`
}

type restrictionRecord struct {
	DOW   string `json:"dow"`
	TZ    string `json:"tz"`
	Start string `json:"start"`
	End   string `json:"end"`
}

func timeOfDay(d time.Duration) string {
	return fmt.Sprintf("%02d:%02d:%02d", int(d/time.Hour), int(d%time.Hour/time.Minute), int(d%time.Minute/time.Second))
}

// encodeSchedule renders s as JSON, or null when there is none.
func encodeSchedule(s *message.Scheduling) (json.RawMessage, error) {
	if s == nil {
		return json.RawMessage("null"), nil
	}
	var r scheduleRecord
	if !s.FirstAttempt.IsZero() {
		r.FirstAttempt = s.FirstAttempt.UTC().Format(time.RFC3339Nano)
	}
	if !s.Expires.IsZero() {
		r.Expires = s.Expires.UTC().Format(time.RFC3339Nano)
	}
	if w := s.Window; w != nil {
		r.Restriction = &restrictionRecord{DOW: w.DOW, TZ: w.TZ, Start: timeOfDay(w.Start), End: timeOfDay(w.End)}
	}
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encode schedule: %w", err)
	}
	return b, nil
}

// decodeSchedule parses the schedule object (nil for null or absent).
func decodeSchedule(raw json.RawMessage) (*message.Scheduling, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var r scheduleRecord
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, fmt.Errorf("decode schedule: %w", err)
	}
	s := &message.Scheduling{}
	var err error
	if r.FirstAttempt != "" {
		if s.FirstAttempt, err = time.Parse(time.RFC3339Nano, r.FirstAttempt); err != nil {
			return nil, fmt.Errorf("decode schedule first_attempt: %w", err)
		}
	}
	if r.Expires != "" {
		if s.Expires, err = time.Parse(time.RFC3339Nano, r.Expires); err != nil {
			return nil, fmt.Errorf("decode schedule expires: %w", err)
		}
	}
	if rr := r.Restriction; rr != nil {
		if s.Window, err = message.ParseDeliveryWindow(rr.DOW, rr.TZ, rr.Start, rr.End); err != nil {
			return nil, fmt.Errorf("decode schedule restriction: %w", err)
		}
	}
	return s, nil
}
