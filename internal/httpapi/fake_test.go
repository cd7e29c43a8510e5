package httpapi

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/kumogo/kumogo/internal/logrecord"
	"github.com/kumogo/kumogo/internal/message"
)

type fakeAuth struct {
	users  map[string]string
	tokens map[string]bool
	calls  atomic.Int64
}

func (a *fakeAuth) ValidateBasic(ctx context.Context, user, password string) (bool, error) {
	a.calls.Add(1)
	p, ok := a.users[user]
	return ok && p == password, nil
}

func (a *fakeAuth) ValidateBearer(ctx context.Context, token string) (bool, error) {
	a.calls.Add(1)
	return a.tokens[token], nil
}

// fakeInjector records what the inject endpoint queues.
type fakeInjector struct {
	ids *message.IDGenerator
	mu  sync.Mutex
	// generated runs as http_message_generated
	generated func(msg *message.Message, auth map[string]any) error
	spoolErr  error
	insertErr error
	queued    []*message.Message
	spooled   map[string]bool
	records   []logrecord.Record
}

func newFakeInjector() *fakeInjector {
	return &fakeInjector{ids: message.NewIDGenerator(), spooled: map[string]bool{}}
}

func (f *fakeInjector) Generated(ctx context.Context, msg *message.Message, auth map[string]any) error {
	if f.generated != nil {
		return f.generated(msg, auth)
	}
	msg.SetMeta("queue", "test")
	return nil
}

func (f *fakeInjector) Spool(ctx context.Context, msg *message.Message, deferred bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.spoolErr != nil {
		return f.spoolErr
	}
	f.spooled[msg.ID()] = true
	return nil
}

func (f *fakeInjector) Insert(ctx context.Context, msg *message.Message) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.insertErr != nil {
		return f.insertErr
	}
	if !f.spooled[msg.ID()] {
		return errors.New("insert before spool")
	}
	f.queued = append(f.queued, msg)
	return nil
}

func (f *fakeInjector) Unspool(ctx context.Context, msg *message.Message) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.spooled, msg.ID())
}

func (f *fakeInjector) Log(rec *logrecord.Record, msg *message.Message) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := *rec
	r.ID = msg.ID()
	f.records = append(f.records, r)
}

func (f *fakeInjector) IDs() *message.IDGenerator { return f.ids }
func (f *fakeInjector) NodeID() string            { return "node" }

func (f *fakeInjector) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.queued)
}

func (f *fakeInjector) messages() []*message.Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*message.Message(nil), f.queued...)
}
