package message

import (
	"strings"
	"sync"
	"time"
)

// Headroom is the number of spare bytes a body buffer should keep in front of
// the data so that trace headers can be prepended without copying the body.
const Headroom = 2048

// Message is one message: envelope, metadata and RFC 5322 data. A Message is
// owned by one goroutine at a time.
type Message struct {
	id      string // idHex as a string; made on first ID() for pooled messages
	idHex   [32]byte
	created time.Time

	sender     Address
	recipients []Address
	meta       map[string]any

	// buf[off:] is the message data; buf[:off] is headroom for prepends.
	buf []byte
	off int

	sched Sched // delivery scheduling state (sched.go)

	rcptStore []Address // recipients of a pooled message (Acquire)
}

// New builds a message with a fresh id from gen. data is used in place (not
// copied); use NewWithHeadroom to prepend headers without copying.
func New(gen *IDGenerator, sender Address, recipients []Address, data []byte) *Message {
	m := &Message{sender: sender, recipients: recipients, buf: data}
	m.idHex, m.created = gen.next()
	m.id = string(m.idHex[:])
	return m
}

// pool holds released messages with their meta maps and recipient
// storage (Acquire, Release).
var pool = sync.Pool{New: func() any { return new(Message) }}

// Pooled messages keep their meta map and recipient storage up to these
// sizes; larger ones are left to the garbage collector.
const (
	maxPooledMeta  = 64
	maxPooledRcpts = 64
)

// Acquire is NewWithHeadroom for a message taken from a pool: it has a
// fresh id from gen, empty metadata (the map of an earlier use, cleared),
// and its own copy of recipients. The id string is only made when ID is
// called; AppendID writes it without. Hand it back with Release when
// nothing refers to it any more, or just drop it.
func Acquire(gen *IDGenerator, sender Address, recipients []Address, buf []byte, off int) *Message {
	m := pool.Get().(*Message)
	m.idHex, m.created = gen.next()
	m.sender = sender
	m.rcptStore = append(m.rcptStore[:0], recipients...)
	m.recipients = m.rcptStore
	m.buf, m.off = buf, off
	return m
}

// Release resets m and puts it back into the pool for Acquire. The caller
// promises that nothing refers to m any longer (queues, log writers, Lua
// handles; Logger.Log does not keep it): m must not be used afterwards.
// Its buffer is not recycled here; that is the caller's business. Strings
// obtained from m earlier (ID, meta values) stay valid.
func (m *Message) Release() {
	meta, store := m.meta, m.rcptStore
	if len(meta) > maxPooledMeta {
		meta = nil
	}
	clear(meta)
	if cap(store) > maxPooledRcpts {
		store = nil
	}
	clear(store)
	*m = Message{meta: meta, rcptStore: store[:0]}
	pool.Put(m)
}

// NewWithHeadroom is New for a buffer whose first off bytes are spare
// headroom and whose data is buf[off:].
func NewWithHeadroom(gen *IDGenerator, sender Address, recipients []Address, buf []byte, off int) *Message {
	m := New(gen, sender, recipients, buf)
	m.off = off
	return m
}

// Restore rebuilds a message with a known id (for example from the spool).
func Restore(id string, sender Address, recipients []Address, meta map[string]any, data []byte) (*Message, error) {
	created, err := IDTime(id)
	if err != nil {
		return nil, err
	}
	return &Message{id: id, created: created, sender: sender, recipients: recipients, meta: meta, buf: data}, nil
}

// ID returns the spool id: a v1 UUID as 32 lowercase hex digits.
func (m *Message) ID() string {
	if m.id == "" && m.idHex[0] != 0 {
		m.id = string(m.idHex[:])
	}
	return m.id
}

// AppendID appends the spool id to b (without making the ID string).
func (m *Message) AppendID(b []byte) []byte {
	if m.id != "" {
		return append(b, m.id...)
	}
	return append(b, m.idHex[:]...)
}

// Created returns the creation time derived from the id.
func (m *Message) Created() time.Time { return m.created }

// Sender returns the envelope sender.
func (m *Message) Sender() Address { return m.sender }

// SetSender replaces the envelope sender.
func (m *Message) SetSender(a Address) { m.sender = a }

// Recipients returns the envelope recipients. The slice must not be modified.
func (m *Message) Recipients() []Address { return m.recipients }

// SetRecipients replaces the recipient list.
func (m *Message) SetRecipients(r []Address) { m.recipients = r }

// Meta returns the metadata value for key and whether it is set. A value set
// to JSON null is reported as set with a nil value.
func (m *Message) Meta(key string) (any, bool) {
	v, ok := m.meta[key]
	return v, ok
}

// MetaString returns the metadata value for key if it is a string.
func (m *Message) MetaString(key string) (string, bool) {
	s, ok := m.meta[key].(string)
	return s, ok
}

// SetMeta stores a JSON-compatible value (nil stores JSON null).
func (m *Message) SetMeta(key string, v any) {
	if m.meta == nil {
		m.meta = make(map[string]any, 16)
	}
	m.meta[key] = v
}

// DeleteMeta removes key from the metadata.
func (m *Message) DeleteMeta(key string) { delete(m.meta, key) }

// MetaMap returns the metadata map itself (nil when empty); callers must not
// keep it beyond the message's lifetime.
func (m *Message) MetaMap() map[string]any { return m.meta }

// CopyConnMeta copies every connection metadata entry into the message meta,
// as KumoMTA does when a message is built at DATA.
func (m *Message) CopyConnMeta(c *ConnMeta) {
	if m.meta == nil {
		m.meta = make(map[string]any, len(c.m)+8)
	}
	for k, v := range c.m {
		m.meta[k] = v
	}
}

// Data returns the message bytes. The slice aliases the message buffer.
func (m *Message) Data() []byte { return m.buf[m.off:] }

// SetData replaces the message bytes.
func (m *Message) SetData(b []byte) {
	m.buf = b
	m.off = 0
}

// Size returns the data length in bytes.
func (m *Message) Size() int { return len(m.buf) - m.off }

// Buffer returns the whole underlying buffer including headroom, so that a
// pooled buffer can be recycled when the message is finished.
func (m *Message) Buffer() []byte { return m.buf }

// PrependRaw puts b (one or more complete header lines ending in CRLF) in
// front of the data, using headroom when there is enough.
func (m *Message) PrependRaw(b []byte) {
	if len(b) <= m.off {
		m.off -= len(b)
		copy(m.buf[m.off:], b)
		return
	}
	data := m.buf[m.off:]
	nb := make([]byte, Headroom+len(b)+len(data))
	off := Headroom
	copy(nb[off:], b)
	copy(nb[off+len(b):], data)
	m.buf, m.off = nb, off
}

// PrependHeader adds "Name: value\r\n" in front of the data. value is used
// verbatim; it may contain folded continuation lines.
func (m *Message) PrependHeader(name, value string) {
	n := len(name) + len(value) + 4
	if n > m.off {
		b := make([]byte, 0, n)
		b = append(append(append(append(b, name...), ": "...), value...), "\r\n"...)
		m.PrependRaw(b)
		return
	}
	// write straight into the headroom
	m.off -= n
	b := m.buf[m.off:m.off]
	_ = append(append(append(append(b, name...), ": "...), value...), "\r\n"...)
}

// FirstRecipientDomain returns the lower-cased domain of the first recipient.
func (m *Message) FirstRecipientDomain() string {
	if len(m.recipients) == 0 {
		return ""
	}
	return strings.ToLower(m.recipients[0].Domain)
}

// QueueName returns the scheduled queue name: meta "queue" verbatim when it
// is a string, otherwise built from campaign, tenant, the first recipient's
// domain and routing_domain as KumoMTA does.
func (m *Message) QueueName() string {
	if q, ok := m.meta["queue"].(string); ok {
		return q
	}
	campaign, _ := m.meta["campaign"].(string)
	tenant, _ := m.meta["tenant"].(string)
	routing, _ := m.meta["routing_domain"].(string)
	_, hasCampaign := m.meta["campaign"].(string)
	_, hasTenant := m.meta["tenant"].(string)
	_, hasRouting := m.meta["routing_domain"].(string)
	return FormatQueueName(campaign, hasCampaign, tenant, hasTenant, m.FirstRecipientDomain(), routing, hasRouting)
}

// FormatQueueName builds a scheduled queue name from its components.
func FormatQueueName(campaign string, hasCampaign bool, tenant string, hasTenant bool, domain, routing string, hasRouting bool) string {
	var sb strings.Builder
	switch {
	case hasCampaign && hasTenant:
		sb.WriteString(campaign)
		sb.WriteByte(':')
		sb.WriteString(tenant)
		sb.WriteByte('@')
	case hasTenant:
		sb.WriteString(tenant)
		sb.WriteByte('@')
	case hasCampaign:
		sb.WriteString(campaign)
		sb.WriteString(":@")
	}
	sb.WriteString(domain)
	if hasRouting {
		sb.WriteByte('!')
		sb.WriteString(routing)
	}
	return sb.String()
}

// DeferredInjectQueue is the internal queue where a listener with
// deferred_queue puts the messages it receives; they leave it through the
// smtp_server_message_deferred_inject event.
const DeferredInjectQueue = "deferred_smtp_inject.kumomta.internal"

// QueueNameParts are the components of a parsed scheduled queue name.
type QueueNameParts struct {
	Campaign, Tenant, Domain, RoutingDomain  string
	HasCampaign, HasTenant, HasRoutingDomain bool
}

// ParseQueueName splits a scheduled queue name back into its components.
func ParseQueueName(name string) QueueNameParts {
	var p QueueNameParts
	rest := name
	if at := strings.IndexByte(name, '@'); at >= 0 {
		prefix := name[:at]
		rest = name[at+1:]
		if c := strings.IndexByte(prefix, ':'); c >= 0 {
			p.Campaign, p.HasCampaign = prefix[:c], true
			// "campaign:@domain" has an empty (but present) tenant
			p.Tenant, p.HasTenant = prefix[c+1:], true
		} else {
			p.Tenant, p.HasTenant = prefix, true
		}
	}
	if bang := strings.IndexByte(rest, '!'); bang >= 0 {
		p.Domain = rest[:bang]
		p.RoutingDomain, p.HasRoutingDomain = rest[bang+1:], true
	} else {
		p.Domain = rest
	}
	return p
}
