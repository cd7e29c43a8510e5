package loghook

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/logrecord"
	"github.com/kumogo/kumogo/internal/message"
)

type fakePolicy struct {
	mu    sync.Mutex
	names []string
	keep  func(*message.Message) bool
}

func (p *fakePolicy) ShouldEnqueueLogRecord(_ context.Context, msg *message.Message, hook string) (bool, error) {
	p.mu.Lock()
	p.names = append(p.names, hook)
	p.mu.Unlock()
	return p.keep(msg), nil
}

type fakeQueue struct {
	mu       sync.Mutex
	spooled  []*message.Message
	inserted int
	deferred bool
}

func (q *fakeQueue) Spool(_ context.Context, msg *message.Message, deferred bool) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.spooled = append(q.spooled, msg)
	q.deferred = deferred
	return nil
}

func (q *fakeQueue) Insert(context.Context, *message.Message) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.inserted++
	return nil
}

func rec(t logrecord.Type, id, rp string) *logrecord.Record {
	return &logrecord.Record{Type: t, ID: id, Sender: "s@src.example", Recipient: []string{"r@dst.example"}, Queue: "dst.example",
		Timestamp: time.Unix(1700000000, 0), ReceptionProtocol: rp}
}

// logRecordMeta decodes the log_record meta of a record's message: the
// record as encoded (the policy decodes it when it reads it).
func logRecordMeta(t *testing.T, m *message.Message) map[string]any {
	t.Helper()
	v, _ := m.Meta("log_record")
	raw, ok := v.(json.RawMessage)
	var rec map[string]any
	if !ok {
		t.Errorf("log_record meta is a %T", v)
	} else if err := json.Unmarshal(raw, &rec); err != nil {
		t.Error(err)
	}
	return rec
}

func TestRecordsBecomeMessages(t *testing.T) {
	pol := &fakePolicy{keep: func(m *message.Message) bool {
		return logRecordMeta(t, m)["id"] != "drop"
	}}
	cfg := config.DefaultLogHook()
	cfg.Name = "webhook"
	cfg.PerRecord = map[string]config.PerRecord{"TransientFailure": {Enable: false}}
	h, err := New(cfg, pol, message.NewIDGenerator(), "node", zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	q := &fakeQueue{}
	// records taken before Start wait for the queue
	h.Log(rec(logrecord.Reception, "keep", "ESMTP"), nil)
	h.Start(q)
	h.Log(rec(logrecord.Delivery, "drop", "ESMTP"), nil)
	h.Log(rec(logrecord.TransientFailure, "off", "ESMTP"), nil)      // per_record enable=false
	h.Log(rec(logrecord.Delivery, "hooked", ReceptionProtocol), nil) // a log-record message's own record
	if err := h.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if h.Queued.Load() != 1 || h.Dropped.Load() != 1 || len(q.spooled) != 1 || q.inserted != 1 {
		t.Fatalf("queued %d dropped %d spooled %d inserted %d", h.Queued.Load(), h.Dropped.Load(), len(q.spooled), q.inserted)
	}
	m := q.spooled[0]
	if m.Sender().String() != "s@src.example" || len(m.Recipients()) != 1 || m.Recipients()[0].String() != "r@dst.example" {
		t.Fatalf("envelope %v %v", m.Sender(), m.Recipients())
	}
	if rp, _ := m.MetaString("reception_protocol"); rp != ReceptionProtocol {
		t.Fatalf("reception_protocol %q", rp)
	}
	if q, _ := m.MetaString("queue"); q != "webhook" || m.QueueName() != "webhook" {
		t.Fatalf("queue %q / %q: the hook's name is the default", q, m.QueueName())
	}
	var body map[string]any
	if err := json.Unmarshal(m.Data(), &body); err != nil || body["type"] != "Reception" || body["id"] != "keep" || body["nodeid"] != "node" {
		t.Fatalf("body %s: %v", m.Data(), err)
	}
	if len(pol.names) != 2 || pol.names[0] != "webhook" {
		t.Fatalf("policy saw %v", pol.names)
	}
	// after Close a record is counted as failed, never blocks
	h.Log(rec(logrecord.Reception, "late", "ESMTP"), nil)
	if h.Failed.Load() != 1 {
		t.Fatalf("failed %d", h.Failed.Load())
	}
}

func TestQueueMetaSetByPolicyWins(t *testing.T) {
	pol := &fakePolicy{keep: func(m *message.Message) bool {
		m.SetMeta("queue", "elsewhere")
		return true
	}}
	cfg := config.DefaultLogHook()
	cfg.Name, cfg.DeferredSpool = "h", true
	h, err := New(cfg, pol, message.NewIDGenerator(), "", zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	q := &fakeQueue{}
	h.Start(q)
	h.Log(rec(logrecord.Bounce, "x", "HTTP"), nil)
	h.Close(context.Background())
	if len(q.spooled) != 1 || q.spooled[0].QueueName() != "elsewhere" || !q.deferred {
		t.Fatalf("spooled %d, deferred %v", len(q.spooled), q.deferred)
	}
}

// TestPerRecordTemplate: a per_record template is the body of the
// record's message (KumoMTA's per_record page: the record's fields as
// variables, arithmetic on timestamps, `log_record | tojson`, headers by
// lower-cased name); the Any entry applies to the types not listed; the
// log_record meta is the record whatever the body is. A template that
// cannot compile is an error from New.
func TestPerRecordTemplate(t *testing.T) {
	pol := &fakePolicy{keep: func(*message.Message) bool { return true }}
	cfg := config.DefaultLogHook()
	cfg.Name = "tpl"
	cfg.Headers = []string{"X-FooBar"}
	cfg.PerRecord = map[string]config.PerRecord{
		"Bounce":    {Enable: true, Template: "Bounce! id={{ id }}, from={{ sender }} code={{ response.code }} age={{ timestamp - created }} foo={{ headers['x-foobar'] }}"},
		"Any":       {Enable: true, Template: "{{ log_record | tojson }}"},
		"Reception": {Enable: true},
	}
	h, err := New(cfg, pol, message.NewIDGenerator(), "n1", zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	q := &fakeQueue{}
	h.Start(q)
	b := rec(logrecord.Bounce, "b1", "ESMTP")
	b.Created = time.Unix(1699999990, 0)
	b.Response.Code = 550
	b.Headers = map[string]any{"X-FooBar": "fb"}
	h.Log(b, nil)
	h.Close(context.Background())
	h2, _ := New(cfg, pol, message.NewIDGenerator(), "n1", zerolog.Nop())
	h2.Start(q)
	h2.Log(rec(logrecord.Delivery, "d1", "ESMTP"), nil)
	h2.Log(rec(logrecord.Reception, "r1", "ESMTP"), nil)
	h2.Close(context.Background())
	if len(q.spooled) != 3 {
		t.Fatalf("spooled %d", len(q.spooled))
	}
	bodies := map[string]string{}
	for _, m := range q.spooled {
		bodies[logRecordMeta(t, m)["id"].(string)] = string(m.Data())
	}
	if want := "Bounce! id=b1, from=s@src.example code=550 age=10 foo=fb"; bodies["b1"] != want {
		t.Errorf("Bounce body %q, want %q", bodies["b1"], want)
	}
	var d map[string]any
	if err := json.Unmarshal([]byte(bodies["d1"]), &d); err != nil || d["type"] != "Delivery" || d["id"] != "d1" || d["timestamp"] != float64(1700000000) {
		t.Errorf("Any (tojson) body %q: %v", bodies["d1"], err)
	}
	if err := json.Unmarshal([]byte(bodies["r1"]), &d); err != nil || d["type"] != "Reception" {
		t.Errorf("Reception (no template) body %q: %v", bodies["r1"], err)
	}
	cfg.PerRecord = map[string]config.PerRecord{"Delivery": {Enable: true, Template: "{{ id "}}
	if _, err := New(cfg, pol, message.NewIDGenerator(), "", zerolog.Nop()); err == nil || !strings.Contains(err.Error(), "per_record Delivery") {
		t.Fatalf("bad template: %v", err)
	}
}
