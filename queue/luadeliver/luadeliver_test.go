package luadeliver

import (
	"context"
	"errors"
	"testing"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/message"
	"github.com/kumogo/kumogo/internal/smtpreply"
)

// fakeSession answers by message body: "ok", "reject:<code> <text>" or
// "error".
type fakeSession struct{ closed bool }

func (f *fakeSession) answer(m *message.Message) (string, error) {
	switch d := string(m.Data()); {
	case d == "ok":
		return "200 OK: thanks", nil
	case d == "error":
		return "", errors.New("lua exploded")
	case len(d) > 7 && d[:7] == "reject:":
		var rej smtpreply.Rejection
		rej.Code = int(d[7]-'0')*100 + int(d[8]-'0')*10 + int(d[9]-'0')
		rej.Text = d[11:]
		return "", &rej
	}
	return "", errors.New("unexpected")
}

func (f *fakeSession) Send(_ context.Context, m *message.Message) (string, error) { return f.answer(m) }
func (f *fakeSession) SendBatch(_ context.Context, ms []*message.Message) ([]string, []error, error) {
	ds, errs := make([]string, len(ms)), make([]error, len(ms))
	for i, m := range ms {
		if string(m.Data()) == "reject-all" {
			return nil, nil, &smtpreply.Rejection{Code: 503, Text: "whole batch"}
		}
		ds[i], errs[i] = f.answer(m)
	}
	return ds, errs, nil
}
func (f *fakeSession) Usable() bool                { return true }
func (f *fakeSession) Close(context.Context) error { f.closed = true; return nil }

var ids = message.NewIDGenerator()

func msg(body string, queue string) *message.Message {
	m := message.New(ids, message.Address{User: "s", Domain: "x.example"}, []message.Address{{User: "a", Domain: "b.example"}, {User: "c", Domain: "b.example"}}, []byte(body))
	m.SetMeta("queue", queue)
	return m
}

func TestClassification(t *testing.T) {
	var args []any
	s := &fakeSession{}
	open := func(_ context.Context, ctor, domain string, tenant, campaign *string) (Session, error) {
		args = []any{ctor, domain, *tenant, *campaign}
		return s, nil
	}
	r := NewRoute(&config.QueueProtocol{CustomLuaConstructor: "make.webhook", BatchSize: 5, MinBatchSize: 2})
	if r.Site() != "lua:make.webhook" || r.BatchSize() != 5 {
		t.Fatalf("route %+v", r)
	}
	c := New(open, r)
	ctx := context.Background()
	res, err := c.Send(ctx, msg("ok", "camp:ten@webhook"))
	if err != nil || len(res) != 2 || res[0].Response.Code != 200 || res[0].Response.Content != "200 OK: thanks" || res[1].Response.Code != 200 {
		t.Fatalf("ok: %+v %v", res, err)
	}
	if args[0] != "make.webhook" || args[1] != "webhook" || args[2] != "ten" || args[3] != "camp" {
		t.Fatalf("constructor args %v", args)
	}
	res, _ = c.Send(ctx, msg("reject:451 later", "webhook"))
	if res[0].Response.Code != 451 || res[0].Response.Content != "later" || !c.Usable() {
		t.Fatalf("451: %+v", res[0].Response)
	}
	res, _ = c.Send(ctx, msg("reject:550 5.1.1 no such user", "webhook"))
	if e := res[0].Response.Enhanced; res[0].Response.Code != 550 || e == nil || e.Class != 5 || e.Subject != 1 || e.Detail != 1 || res[0].Response.Content != "no such user" {
		t.Fatalf("550: %+v", res[0].Response)
	}
	ress, err := c.SendBatch(ctx, []*message.Message{msg("ok", "webhook"), msg("reject:500 bad", "webhook")})
	if err != nil || ress[0][0].Response.Code != 200 || ress[1][1].Response.Code != 500 {
		t.Fatalf("batch: %+v %v", ress, err)
	}
	ress, err = c.SendBatch(ctx, []*message.Message{msg("ok", "webhook"), msg("reject-all", "webhook")})
	if err != nil || ress[0][0].Response.Code != 503 || ress[1][0].Response.Code != 503 {
		t.Fatalf("whole-batch reject: %+v %v", ress, err)
	}
	if info := c.Info(); info.PeerName != "Lua via make.webhook" || info.DeliveryProtocol != "Lua" {
		t.Fatalf("info %+v", info)
	}
	res, _ = c.Send(ctx, msg("reject:421 closing", "webhook"))
	if res[0].Response.Code != 421 || c.Usable() {
		t.Fatal("a 421 ends the session")
	}
	c.Close()
	if !s.closed {
		t.Fatal("Close did not close the session")
	}
}

func TestLuaErrorEndsSession(t *testing.T) {
	c := New(func(context.Context, string, string, *string, *string) (Session, error) { return &fakeSession{}, nil },
		NewRoute(&config.QueueProtocol{CustomLuaConstructor: "c", BatchSize: 1, MinBatchSize: 1}))
	if _, err := c.Send(context.Background(), msg("error", "q")); err == nil || c.Usable() {
		t.Fatalf("err %v usable %v", err, c.Usable())
	}
	failing := New(func(context.Context, string, string, *string, *string) (Session, error) {
		return nil, errors.New("no handler")
	},
		NewRoute(&config.QueueProtocol{CustomLuaConstructor: "c"}))
	if _, err := failing.Send(context.Background(), msg("ok", "q")); err == nil || failing.Usable() {
		t.Fatal("a failing constructor must fail the send and the session")
	}
}
