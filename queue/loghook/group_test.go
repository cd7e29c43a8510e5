package loghook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"

	"github.com/rs/zerolog"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/logrecord"
	"github.com/kumogo/kumogo/internal/message"
)

// groupQueue is a Queue that takes groups; the first call waits for
// release, so that records pile up behind it; records whose id is "fail"
// are refused.
type groupQueue struct {
	fakeQueue
	release chan struct{}
	once    sync.Once
	gmu     sync.Mutex
	groups  []int
}

func (q *groupQueue) QueueGroup(_ context.Context, msgs []*message.Message) []error {
	q.once.Do(func() { <-q.release })
	q.gmu.Lock()
	q.groups = append(q.groups, len(msgs))
	q.gmu.Unlock()
	errs := make([]error, len(msgs))
	for i, m := range msgs {
		if logRecordID(m) == "fail" {
			errs[i] = errors.New("spool: disk on fire")
			continue
		}
		q.mu.Lock()
		q.spooled = append(q.spooled, m)
		q.mu.Unlock()
	}
	return errs
}

func logRecordID(m *message.Message) string {
	v, _ := m.Meta("log_record")
	raw, _ := v.(json.RawMessage)
	for _, id := range []string{"fail", "drop"} {
		if bytes.Contains(raw, []byte(`"id":"`+id+`"`)) {
			return id
		}
	}
	return ""
}

// TestRecordsQueuedInGroups: with a queue that takes groups, the records
// logged while the workers wait for a commit are queued together (not one
// call per record), each once; the policy still decides for each record
// (dropped ones never reach the queue) and a record the queue refuses is
// counted as failed.
func TestRecordsQueuedInGroups(t *testing.T) {
	pol := &fakePolicy{keep: func(m *message.Message) bool { return logRecordID(m) != "drop" }}
	cfg := config.DefaultLogHook()
	cfg.Name = "webhook"
	h, err := New(cfg, pol, message.NewIDGenerator(), "node", zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	q := &groupQueue{release: make(chan struct{})}
	h.Start(q)
	const n = 1000
	for i := range n {
		id := "keep"
		switch i % 100 {
		case 7:
			id = "drop"
		case 9:
			id = "fail"
		}
		h.Log(rec(logrecord.Reception, id, "ESMTP"), nil)
	}
	close(q.release)
	if err := h.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if h.Queued.Load() != n-20 || h.Dropped.Load() != 10 || h.Failed.Load() != 10 || len(q.spooled) != n-20 {
		t.Fatalf("queued %d dropped %d failed %d spooled %d", h.Queued.Load(), h.Dropped.Load(), h.Failed.Load(), len(q.spooled))
	}
	if q.inserted != 0 {
		t.Fatalf("%d records inserted one by one beside the groups", q.inserted)
	}
	seen := map[string]bool{}
	for _, m := range q.spooled {
		if seen[m.ID()] {
			t.Fatalf("record %s queued twice", m.ID())
		}
		seen[m.ID()] = true
		if qn, _ := m.MetaString("queue"); qn != "webhook" {
			t.Fatalf("queue %q", qn)
		}
	}
	if len(q.groups) > n/10 {
		t.Fatalf("%d records queued in %d calls (%v): not grouped", n-10, len(q.groups), q.groups)
	}
}
