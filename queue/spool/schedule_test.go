package spool

import (
	"strings"
	"testing"
	"time"

	"github.com/kumogo/kumogo/internal/message"
)

func TestScheduleRoundTrip(t *testing.T) {
	gen := message.NewIDGenerator()
	msg := message.New(gen, message.Address{User: "s", Domain: "x.com"}, []message.Address{{User: "r", Domain: "y.com"}}, []byte("x\r\n"))
	w, err := message.ParseDeliveryWindow("Mon-Fri", "Europe/Berlin", "09:00", "17:30")
	if err != nil {
		t.Fatal(err)
	}
	first := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	exp := first.Add(48 * time.Hour)
	msg.SetScheduling(&message.Scheduling{FirstAttempt: first, Expires: exp, Window: w})
	meta, err := EncodeMeta(msg)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(meta), `"schedule":{"first_attempt":"2030-01-02T03:04:05Z","expires":"2030-01-04T03:04:05Z","restriction":{"dow":"Mon-Fri","tz":"Europe/Berlin","start":"09:00:00","end":"17:30:00"}}`) {
		t.Fatalf("meta record %s", meta)
	}
	back, err := DecodeMessage(msg.ID(), meta, []byte("x\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	s := back.Scheduling()
	if s == nil || !s.FirstAttempt.Equal(first) || !s.Expires.Equal(exp) || s.Window == nil ||
		s.Window.Start != 9*time.Hour || s.Window.End != 17*time.Hour+30*time.Minute || !s.Window.Days[time.Wednesday] || s.Window.Days[time.Sunday] {
		t.Fatalf("decoded %+v", s)
	}
	plain := message.New(gen, message.Address{}, []message.Address{{User: "r", Domain: "y.com"}}, []byte("x\r\n"))
	meta, _ = EncodeMeta(plain)
	if !strings.Contains(string(meta), `"schedule":null`) {
		t.Fatalf("no scheduling must be null: %s", meta)
	}
}
