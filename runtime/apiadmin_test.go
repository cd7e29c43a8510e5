package runtime

import (
	"context"
	"testing"

	"github.com/kumogo/kumogo/internal/adminapi"
	"github.com/kumogo/kumogo/internal/message"
)

// adminHost serves kumo.api.admin.* from a fake service that records the
// requests.
type adminHost struct {
	fakeHost
	svc *fakeAdmin
}

func (h *adminHost) QueueAdmin() (adminapi.Service, error) { return h.svc, nil }

type fakeAdmin struct {
	adminapi.Service // unused methods panic
	bounce           adminapi.BounceV1Request
	suspend          adminapi.SuspendV1Request
	ready            adminapi.SuspendReadyQueueV1Request
	cancelled        []string
}

func (f *fakeAdmin) Bounce(_ context.Context, r adminapi.BounceV1Request) (adminapi.BounceV1Response, error) {
	f.bounce = r
	return adminapi.BounceV1Response{ID: "b-1"}, nil
}

func (f *fakeAdmin) Suspend(_ context.Context, r adminapi.SuspendV1Request) (adminapi.SuspendV1Response, error) {
	f.suspend = r
	return adminapi.SuspendV1Response{ID: "s-1"}, nil
}

func (f *fakeAdmin) SuspendReadyQueue(_ context.Context, r adminapi.SuspendReadyQueueV1Request) (adminapi.SuspendV1Response, error) {
	f.ready = r
	return adminapi.SuspendV1Response{ID: "r-1"}, nil
}

func (f *fakeAdmin) ListSuspensions() []adminapi.SuspendV1ListEntry {
	d := "example.com"
	return []adminapi.SuspendV1ListEntry{{ID: "s-1", Domain: &d, Reason: "why", Duration: "4m 59s"}}
}

func (f *fakeAdmin) CancelSuspension(id string) (bool, error) {
	f.cancelled = append(f.cancelled, id)
	return id == "s-1", nil
}

// TestAPIAdmin: the kumo.api.admin functions KumoMTA's shaping helper
// calls take the HTTP endpoints' tables and return the new rule's id;
// list and delete work on the same rules.
func TestAPIAdmin(t *testing.T) {
	h := &adminHost{svc: &fakeAdmin{}}
	r := newRuntime(t, `
local kumo = require 'kumo'
kumo.on('check', function()
  local b = kumo.api.admin.bounce.bounce { domain = 'example.com', tenant = 't', reason = 'bad', duration = '10m' }
  local s = kumo.api.admin.suspend.suspend { campaign = 'c', reason = 'slow', expires = '2030-01-01T00:00:00Z' }
  local q = kumo.api.admin.suspend_ready_q.suspend { name = 'src->site@smtp_client', reason = 'blocked' }
  local l = kumo.api.admin.suspend.list()
  assert(#l == 1 and l[1].domain == 'example.com' and l[1].duration == '4m 59s', 'list')
  assert(kumo.api.admin.suspend.delete('s-1') == true, 'delete')
  assert(kumo.api.admin.suspend.delete('nope') == false, 'delete unknown')
  return b .. ' ' .. s .. ' ' .. q
end)
`, func(o *Options) { o.Host = h })
	out, err := r.Call(context.Background(), "check")
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 1 || out[0] != "b-1 s-1 r-1" {
		t.Fatalf("ids %v", out)
	}
	f := h.svc
	if f.bounce.Domain == nil || *f.bounce.Domain != "example.com" || *f.bounce.Tenant != "t" || f.bounce.Reason != "bad" || *f.bounce.Duration != "10m" {
		t.Errorf("bounce request %+v", f.bounce)
	}
	if f.suspend.Campaign == nil || *f.suspend.Campaign != "c" || *f.suspend.Expires != "2030-01-01T00:00:00Z" {
		t.Errorf("suspend request %+v", f.suspend)
	}
	if f.ready.Name != "src->site@smtp_client" || f.ready.Reason != "blocked" {
		t.Errorf("ready request %+v", f.ready)
	}
}

// TestRebindMessageEvent: rebind_message gets the message and the
// request's data table, and may change the meta.
func TestRebindMessageEvent(t *testing.T) {
	r := newRuntime(t, `
local kumo = require 'kumo'
kumo.on('rebind_message', function(msg, data)
  msg:set_meta('routing_domain', data.to)
end)
`)
	msg := message.New(message.NewIDGenerator(), message.Address{User: "s", Domain: "example.com"}, []message.Address{{User: "r", Domain: "example.com"}}, []byte("Subject: x\r\n\r\nx\r\n"))
	if err := r.RebindMessage(context.Background(), msg, map[string]string{"to": "other.example"}); err != nil {
		t.Fatal(err)
	}
	if v, _ := msg.MetaString("routing_domain"); v != "other.example" {
		t.Fatalf("routing_domain = %q", v)
	}
}
