package testutil

import (
	"slices"
	"sync"

	"github.com/kumogo/kumogo/internal/logrecord"
	"github.com/kumogo/kumogo/internal/message"
)

// RecordLog keeps log records in memory; it satisfies the record-logger
// interfaces of smtpd and queue.
type RecordLog struct {
	mu   sync.Mutex
	recs []logrecord.Record
}

// Enabled is always true.
func (l *RecordLog) Enabled() bool { return true }

// Log stores a deep copy of rec (callers reuse records), with the id,
// sender and recipients taken from msg when rec's ID is empty, as the
// log encoder does.
func (l *RecordLog) Log(rec *logrecord.Record, msg *message.Message) {
	c := *rec
	c.Recipient = slices.Clone(rec.Recipient)
	if rec.PeerAddress != nil {
		pa := *rec.PeerAddress
		c.PeerAddress = &pa
	}
	if rec.SourceAddress != nil {
		sa := *rec.SourceAddress
		c.SourceAddress = &sa
	}
	if msg != nil && c.ID == "" {
		c.ID = msg.ID()
		c.Sender = msg.Sender().String()
		if c.Recipient == nil {
			for _, r := range msg.Recipients() {
				c.Recipient = append(c.Recipient, r.String())
			}
		}
	}
	l.mu.Lock()
	l.recs = append(l.recs, c)
	l.mu.Unlock()
}

// All returns the records so far, in order.
func (l *RecordLog) All() []logrecord.Record {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]logrecord.Record(nil), l.recs...)
}

// ByType returns the records of one type, in order.
func (l *RecordLog) ByType(t logrecord.Type) []logrecord.Record {
	var out []logrecord.Record
	for _, r := range l.All() {
		if r.Type == t {
			out = append(out, r)
		}
	}
	return out
}

// Count returns how many records of type t there are.
func (l *RecordLog) Count(t logrecord.Type) int { return len(l.ByType(t)) }
