// Package logrecord defines kumogo's log records, which are KumoMTA's JSON
// log records field for field, and writes them as zstd-compressed segment
// files the way kumo.configure_local_logs does: one JSON object per line,
// files named after their UTC start time, sealed read-only when complete.
//
// A Logger encodes each record synchronously in the caller's goroutine
// (selecting the configured meta and header names from the message) and
// hands the bytes to one background writer goroutine through a bounded
// channel. ReadDir and ReadDirRaw decode a log directory back, for tests and
// tools.
package logrecord

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/kumogo/kumogo/internal/smtpreply"
)

// Type is the kind of a log record.
type Type uint8

// The record types, with KumoMTA's names.
const (
	Reception Type = iota
	Delivery
	Bounce
	TransientFailure
	Expiration
	AdminBounce
	OOB
	Feedback
	Rejection
	AdminRebind
	DeferredInjectionRebind
	Delayed
	XferOut
	XferIn
	numTypes
)

// AnyName is the per_record configuration key that applies to every record
// type without an entry of its own.
const AnyName = "Any"

var typeNames = [numTypes]string{
	Reception:               "Reception",
	Delivery:                "Delivery",
	Bounce:                  "Bounce",
	TransientFailure:        "TransientFailure",
	Expiration:              "Expiration",
	AdminBounce:             "AdminBounce",
	OOB:                     "OOB",
	Feedback:                "Feedback",
	Rejection:               "Rejection",
	AdminRebind:             "AdminRebind",
	DeferredInjectionRebind: "DeferredInjectionRebind",
	Delayed:                 "Delayed",
	XferOut:                 "XferOut",
	XferIn:                  "XferIn",
}

// String returns KumoMTA's name of the type.
func (t Type) String() string {
	if t < numTypes {
		return typeNames[t]
	}
	return fmt.Sprintf("Type(%d)", uint8(t))
}

// BounceClassifiable reports whether the bounce classifier fills the
// bounce_classification of records of this type: the failures, the
// out-of-band reports and the rejections, as KumoMTA's logging layer does
// (its configure_bounce_classifier page: "the logging functions will
// automatically call into it").
func (t Type) BounceClassifiable() bool {
	switch t {
	case Bounce, TransientFailure, Expiration, AdminBounce, OOB, Feedback, Rejection:
		return true
	}
	return false
}

// ParseType returns the type called name (case-sensitive, as in KumoMTA).
func ParseType(name string) (Type, error) {
	for i, n := range typeNames {
		if n == name {
			return Type(i), nil
		}
	}
	return 0, fmt.Errorf("logrecord: unknown record type %q", name)
}

// MarshalText implements encoding.TextMarshaler.
func (t Type) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (t *Type) UnmarshalText(b []byte) error {
	v, err := ParseType(string(b))
	if err != nil {
		return err
	}
	*t = v
	return nil
}

// PeerAddress is the remote party: EHLO name and IP for receptions, MX host
// and ip[:port] for deliveries.
type PeerAddress struct {
	Name string `json:"name"`
	Addr string `json:"addr"`
}

// SourceAddress is the local address a delivery was made from; Server and
// Protocol (set when delivering through a proxy) are omitted when empty.
type SourceAddress struct {
	Address  string `json:"address"`
	Server   string `json:"server,omitempty"`
	Protocol string `json:"protocol,omitempty"`
}

// Record is one log record. Its JSON form (AppendJSON, MarshalJSON) uses
// KumoMTA's field names and shapes:
//
//   - recipient is a string for one recipient, an array otherwise;
//   - timestamp and created are unix seconds, event_time and created_time
//     the same instants as RFC 3339 strings (UTC, nanoseconds when
//     non-zero); a zero Created falls back to Timestamp;
//   - peer_address, source_address, feedback_report, response.enhanced_code,
//     response.command, egress_pool, egress_source, delivery_protocol and
//     reception_protocol are null when unset;
//   - bounce_classification is "Uncategorized" when empty;
//   - meta and headers are objects with sorted keys ({} when empty);
//   - tls_cipher, tls_protocol_version, tls_peer_subject_name,
//     provider_name and session_id are omitted when empty.
type Record struct {
	Type                 Type
	ID                   string
	Sender               string
	Recipient            []string
	Queue                string
	Site                 string
	Size                 int64
	Response             smtpreply.Response
	PeerAddress          *PeerAddress
	Timestamp            time.Time
	Created              time.Time
	NumAttempts          int
	BounceClassification string
	EgressPool           string
	EgressSource         string
	SourceAddress        *SourceAddress
	// FeedbackReport is the ARF report as raw JSON (nil = null).
	FeedbackReport     json.RawMessage
	Meta               map[string]any
	Headers            map[string]any
	DeliveryProtocol   string
	ReceptionProtocol  string
	NodeID             string
	TLSCipher          string
	TLSProtocolVersion string
	TLSPeerSubjectName string
	ProviderName       string
	SessionID          string
}

// DefaultBounceClassification is the classification of records that no
// classifier labelled.
const DefaultBounceClassification = "Uncategorized"

// AppendJSON appends the record's JSON object (without a newline) to b.
func (r *Record) AppendJSON(b []byte) []byte {
	var e recordEncoder
	return e.append(b, r)
}

// MarshalJSON implements json.Marshaler.
func (r Record) MarshalJSON() ([]byte, error) {
	return r.AppendJSON(make([]byte, 0, 512)), nil
}

// jsonRecord is the decoding shape of a record.
type jsonRecord struct {
	Type                 Type               `json:"type"`
	ID                   string             `json:"id"`
	Sender               string             `json:"sender"`
	Recipient            json.RawMessage    `json:"recipient"`
	Queue                string             `json:"queue"`
	Site                 string             `json:"site"`
	Size                 int64              `json:"size"`
	Response             smtpreply.Response `json:"response"`
	PeerAddress          *PeerAddress       `json:"peer_address"`
	Timestamp            int64              `json:"timestamp"`
	EventTime            string             `json:"event_time"`
	Created              int64              `json:"created"`
	CreatedTime          string             `json:"created_time"`
	NumAttempts          int                `json:"num_attempts"`
	BounceClassification string             `json:"bounce_classification"`
	EgressPool           string             `json:"egress_pool"`
	EgressSource         string             `json:"egress_source"`
	SourceAddress        *SourceAddress     `json:"source_address"`
	FeedbackReport       json.RawMessage    `json:"feedback_report"`
	Meta                 map[string]any     `json:"meta"`
	Headers              map[string]any     `json:"headers"`
	DeliveryProtocol     string             `json:"delivery_protocol"`
	ReceptionProtocol    string             `json:"reception_protocol"`
	NodeID               string             `json:"nodeid"`
	TLSCipher            string             `json:"tls_cipher"`
	TLSProtocolVersion   string             `json:"tls_protocol_version"`
	TLSPeerSubjectName   string             `json:"tls_peer_subject_name"`
	ProviderName         string             `json:"provider_name"`
	SessionID            string             `json:"session_id"`
}

func decodeTime(rfc string, unix int64) time.Time {
	if rfc != "" {
		if t, err := time.Parse(time.RFC3339Nano, rfc); err == nil {
			return t
		}
	}
	return time.Unix(unix, 0).UTC()
}

// UnmarshalJSON implements json.Unmarshaler; it accepts what AppendJSON
// writes (and KumoMTA's records, which may lack event_time/created_time).
func (r *Record) UnmarshalJSON(b []byte) error {
	var j jsonRecord
	if err := json.Unmarshal(b, &j); err != nil {
		return fmt.Errorf("logrecord: decode record: %w", err)
	}
	var rcpt []string
	if len(j.Recipient) > 0 && string(j.Recipient) != "null" {
		if j.Recipient[0] == '"' {
			var s string
			if err := json.Unmarshal(j.Recipient, &s); err != nil {
				return fmt.Errorf("logrecord: decode recipient: %w", err)
			}
			rcpt = []string{s}
		} else if err := json.Unmarshal(j.Recipient, &rcpt); err != nil {
			return fmt.Errorf("logrecord: decode recipient: %w", err)
		}
	}
	fb := j.FeedbackReport
	if string(fb) == "null" {
		fb = nil
	}
	*r = Record{
		Type: j.Type, ID: j.ID, Sender: j.Sender, Recipient: rcpt, Queue: j.Queue, Site: j.Site,
		Size: j.Size, Response: j.Response, PeerAddress: j.PeerAddress,
		Timestamp: decodeTime(j.EventTime, j.Timestamp), Created: decodeTime(j.CreatedTime, j.Created),
		NumAttempts: j.NumAttempts, BounceClassification: j.BounceClassification,
		EgressPool: j.EgressPool, EgressSource: j.EgressSource, SourceAddress: j.SourceAddress,
		FeedbackReport: fb, Meta: j.Meta, Headers: j.Headers,
		DeliveryProtocol: j.DeliveryProtocol, ReceptionProtocol: j.ReceptionProtocol, NodeID: j.NodeID,
		TLSCipher: j.TLSCipher, TLSProtocolVersion: j.TLSProtocolVersion, TLSPeerSubjectName: j.TLSPeerSubjectName,
		ProviderName: j.ProviderName, SessionID: j.SessionID,
	}
	return nil
}
