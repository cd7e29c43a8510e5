package logrecord

import (
	"bytes"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kumogo/kumogo/internal/message"
)

// selector matches names against exact names and trailing-'*' prefixes.
type selector struct {
	exact    []string
	prefixes []string
	fold     bool // case-insensitive (header names)
}

func newSelector(patterns []string, fold bool) *selector {
	if len(patterns) == 0 {
		return nil
	}
	s := &selector{fold: fold}
	for _, p := range patterns {
		if strings.HasSuffix(p, "*") {
			s.prefixes = append(s.prefixes, strings.TrimSuffix(p, "*"))
		} else {
			s.exact = append(s.exact, p)
		}
	}
	return s
}

func equalFold(a []byte, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// matchBytes reports whether name matches (used for header names).
func (s *selector) matchBytes(name []byte) bool {
	for _, e := range s.exact {
		if s.fold && equalFold(name, e) || !s.fold && string(name) == e {
			return true
		}
	}
	for _, p := range s.prefixes {
		if len(name) >= len(p) && (s.fold && equalFold(name[:len(p)], p) || !s.fold && string(name[:len(p)]) == p) {
			return true
		}
	}
	return false
}

// matchString reports whether name matches (used for meta keys).
func (s *selector) matchString(name string) bool {
	for _, e := range s.exact {
		if s.fold && strings.EqualFold(name, e) || !s.fold && name == e {
			return true
		}
	}
	for _, p := range s.prefixes {
		if len(name) >= len(p) && (s.fold && strings.EqualFold(name[:len(p)], p) || !s.fold && name[:len(p)] == p) {
			return true
		}
	}
	return false
}

type headerKV struct{ name, value []byte }

// recordEncoder renders a record, filling gaps from a message and selecting
// meta and header names from it. It lives on the caller's stack; the small
// arrays keep typical selections allocation-free.
type recordEncoder struct {
	msg     *message.Message
	metaSel *selector
	hdrSel  *selector
	nodeID  string
	now     time.Time

	keyArr [32]string
	hdrArr [16]headerKV
}

func appendTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.UTC().AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

func appendRecipient(b []byte, r *Record, msg *message.Message) []byte {
	if r.Recipient != nil || msg == nil {
		if len(r.Recipient) == 1 {
			return appendString(b, r.Recipient[0])
		}
		b = append(b, '[')
		for i, s := range r.Recipient {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, s)
		}
		return append(b, ']')
	}
	rcpts := msg.Recipients()
	one := len(rcpts) == 1
	if !one {
		b = append(b, '[')
	}
	for i, a := range rcpts {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendAddress(b, a)
	}
	if !one {
		b = append(b, ']')
	}
	return b
}

// appendAddress appends a.String() as a JSON string without building it.
func appendAddress(b []byte, a message.Address) []byte {
	if a.IsNull() {
		return append(b, `""`...)
	}
	if a.Domain == "" {
		return appendString(b, a.User)
	}
	b = append(b, '"')
	b = appendEscaped(b, a.User)
	b = append(b, '@')
	b = appendEscaped(b, a.Domain)
	return append(b, '"')
}

func (e *recordEncoder) metaString(key string) string {
	if e.msg == nil {
		return ""
	}
	s, _ := e.msg.MetaString(key)
	return s
}

// append renders r.
func (e *recordEncoder) append(b []byte, r *Record) []byte {
	msg := e.msg
	fromMsg := msg != nil && r.ID == ""

	b = append(b, `{"type":`...)
	b = appendString(b, r.Type.String())
	b = append(b, `,"id":`...)
	if fromMsg {
		b = append(b, '"')
		b = msg.AppendID(b) // hex digits: nothing to escape
		b = append(b, '"')
		b = append(b, `,"sender":`...)
		b = appendAddress(b, msg.Sender())
	} else {
		b = appendString(b, r.ID)
		b = append(b, `,"sender":`...)
		b = appendString(b, r.Sender)
	}
	b = append(b, `,"recipient":`...)
	b = appendRecipient(b, r, msg)
	b = append(b, `,"queue":`...)
	if r.Queue == "" && msg != nil {
		b = appendString(b, msg.QueueName())
	} else {
		b = appendString(b, r.Queue)
	}
	b = append(b, `,"site":`...)
	b = appendString(b, r.Site)
	b = append(b, `,"size":`...)
	size := r.Size
	if size == 0 && msg != nil {
		size = int64(msg.Size())
	}
	b = strconv.AppendInt(b, size, 10)

	b = append(b, `,"response":{"code":`...)
	b = strconv.AppendInt(b, int64(r.Response.Code), 10)
	b = append(b, `,"enhanced_code":`...)
	if ec := r.Response.Enhanced; ec != nil {
		b = append(b, `{"class":`...)
		b = strconv.AppendInt(b, int64(ec.Class), 10)
		b = append(b, `,"subject":`...)
		b = strconv.AppendInt(b, int64(ec.Subject), 10)
		b = append(b, `,"detail":`...)
		b = strconv.AppendInt(b, int64(ec.Detail), 10)
		b = append(b, '}')
	} else {
		b = append(b, "null"...)
	}
	b = append(b, `,"content":`...)
	b = appendString(b, r.Response.Content)
	b = append(b, `,"command":`...)
	b = appendNullableString(b, r.Response.Command)
	b = append(b, '}')

	b = append(b, `,"peer_address":`...)
	if p := r.PeerAddress; p != nil {
		b = append(b, `{"name":`...)
		b = appendString(b, p.Name)
		b = append(b, `,"addr":`...)
		b = appendString(b, p.Addr)
		b = append(b, '}')
	} else {
		b = append(b, "null"...)
	}

	ts := r.Timestamp
	if ts.IsZero() {
		ts = e.now
		if ts.IsZero() {
			ts = time.Now()
		}
	}
	created := r.Created
	if created.IsZero() && msg != nil {
		created = msg.Created()
	}
	if created.IsZero() {
		created = ts
	}
	b = append(b, `,"timestamp":`...)
	b = strconv.AppendInt(b, ts.Unix(), 10)
	b = append(b, `,"event_time":`...)
	b = appendTime(b, ts)
	b = append(b, `,"created":`...)
	b = strconv.AppendInt(b, created.Unix(), 10)
	b = append(b, `,"created_time":`...)
	b = appendTime(b, created)
	b = append(b, `,"num_attempts":`...)
	b = strconv.AppendInt(b, int64(r.NumAttempts), 10)
	b = append(b, `,"bounce_classification":`...)
	if r.BounceClassification == "" {
		b = append(b, `"`+DefaultBounceClassification+`"`...)
	} else {
		b = appendString(b, r.BounceClassification)
	}
	b = append(b, `,"egress_pool":`...)
	b = appendNullableString(b, r.EgressPool)
	b = append(b, `,"egress_source":`...)
	b = appendNullableString(b, r.EgressSource)
	b = append(b, `,"source_address":`...)
	if s := r.SourceAddress; s != nil {
		b = append(b, `{"address":`...)
		b = appendString(b, s.Address)
		if s.Server != "" {
			b = append(b, `,"server":`...)
			b = appendString(b, s.Server)
		}
		if s.Protocol != "" {
			b = append(b, `,"protocol":`...)
			b = appendString(b, s.Protocol)
		}
		b = append(b, '}')
	} else {
		b = append(b, "null"...)
	}
	b = append(b, `,"feedback_report":`...)
	if len(r.FeedbackReport) > 0 {
		b = append(b, r.FeedbackReport...)
	} else {
		b = append(b, "null"...)
	}
	b = append(b, `,"meta":`...)
	b = e.appendMeta(b, r)
	b = append(b, `,"headers":`...)
	b = e.appendHeaders(b, r)
	b = append(b, `,"delivery_protocol":`...)
	b = appendNullableString(b, r.DeliveryProtocol)
	b = append(b, `,"reception_protocol":`...)
	rp := r.ReceptionProtocol
	if rp == "" {
		rp = e.metaString("reception_protocol")
	}
	b = appendNullableString(b, rp)
	b = append(b, `,"nodeid":`...)
	node := r.NodeID
	if node == "" {
		node = e.nodeID
	}
	b = appendString(b, node)

	cipher, version, subject := r.TLSCipher, r.TLSProtocolVersion, r.TLSPeerSubjectName
	if r.Type == Reception && cipher == "" && version == "" && subject == "" {
		cipher = e.metaString("tls_cipher")
		version = e.metaString("tls_protocol_version")
		subject = e.metaString("tls_peer_subject_name")
	}
	b = appendOptional(b, `,"tls_cipher":`, cipher)
	b = appendOptional(b, `,"tls_protocol_version":`, version)
	b = appendOptional(b, `,"tls_peer_subject_name":`, subject)
	b = appendOptional(b, `,"provider_name":`, r.ProviderName)
	b = appendOptional(b, `,"session_id":`, r.SessionID)
	return append(b, '}')
}

func appendOptional(b []byte, key, v string) []byte {
	if v == "" {
		return b
	}
	b = append(b, key...)
	return appendString(b, v)
}

// appendMeta writes the meta object: r.Meta plus the selected message meta
// (r.Meta wins on a clash), keys sorted.
func (e *recordEncoder) appendMeta(b []byte, r *Record) []byte {
	var msgMeta map[string]any
	if e.msg != nil && e.metaSel != nil {
		msgMeta = e.msg.MetaMap()
	}
	if len(r.Meta) == 0 && len(msgMeta) == 0 {
		return append(b, "{}"...)
	}
	keys := e.keyArr[:0]
	for k := range r.Meta {
		keys = append(keys, k)
	}
	if len(msgMeta) > 0 {
		sel := e.metaSel
		if len(sel.prefixes) == 0 {
			for _, k := range sel.exact {
				if _, ok := msgMeta[k]; ok {
					keys = append(keys, k)
				}
			}
		} else {
			for k := range msgMeta {
				if sel.matchString(k) {
					keys = append(keys, k)
				}
			}
		}
	}
	slices.Sort(keys)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 && keys[i-1] == k {
			continue
		}
		if b[len(b)-1] != '{' {
			b = append(b, ',')
		}
		b = appendString(b, k)
		b = append(b, ':')
		if v, ok := r.Meta[k]; ok {
			b = appendAny(b, v)
		} else {
			b = appendAny(b, msgMeta[k])
		}
	}
	return append(b, '}')
}

// appendHeaders writes the headers object: r.Headers (sorted) followed by
// the selected message headers in message order, keyed by the header's own
// name; for repeated names the last occurrence wins.
func (e *recordEncoder) appendHeaders(b []byte, r *Record) []byte {
	b = append(b, '{')
	if len(r.Headers) > 0 {
		keys := e.keyArr[:0]
		for k := range r.Headers {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			if b[len(b)-1] != '{' {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			b = appendAny(b, r.Headers[k])
		}
	}
	if e.msg == nil || e.hdrSel == nil {
		return append(b, '}')
	}
	sel := e.hdrSel
	hdrs := e.hdrArr[:0]
	for name, value := range e.msg.RawHeaders() {
		if sel.matchBytes(name) {
			if _, clash := r.Headers[string(name)]; !clash {
				hdrs = append(hdrs, headerKV{name, value})
			}
		}
	}
outer:
	for i, h := range hdrs {
		for _, later := range hdrs[i+1:] {
			if bytes.Equal(later.name, h.name) {
				continue outer
			}
		}
		if b[len(b)-1] != '{' {
			b = append(b, ',')
		}
		b = appendString(b, h.name)
		b = append(b, ':')
		if bytes.IndexByte(h.value, '\n') >= 0 || bytes.Contains(h.value, []byte("=?")) {
			b = appendString(b, message.DecodeHeaderValue(h.value))
		} else {
			b = appendString(b, h.value)
		}
	}
	return append(b, '}')
}
