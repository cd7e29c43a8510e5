package loghook

import (
	"context"
	"encoding/json"
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

func TestRecordsBecomeMessages(t *testing.T) {
	pol := &fakePolicy{keep: func(m *message.Message) bool {
		r, _ := m.Meta("log_record")
		return r.(map[string]any)["id"] != "drop"
	}}
	cfg := config.DefaultLogHook()
	cfg.Name = "webhook"
	cfg.PerRecord = map[string]config.PerRecord{"TransientFailure": {Enable: false}}
	h := New(cfg, pol, message.NewIDGenerator(), "node", zerolog.Nop())
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
	h := New(cfg, pol, message.NewIDGenerator(), "", zerolog.Nop())
	q := &fakeQueue{}
	h.Start(q)
	h.Log(rec(logrecord.Bounce, "x", "HTTP"), nil)
	h.Close(context.Background())
	if len(q.spooled) != 1 || q.spooled[0].QueueName() != "elsewhere" || !q.deferred {
		t.Fatalf("spooled %d, deferred %v", len(q.spooled), q.deferred)
	}
}
