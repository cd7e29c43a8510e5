package httpapi

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/kumogo/kumogo/internal/adminapi"
	"github.com/kumogo/kumogo/internal/config"
)

// fakeQueueAdmin answers the queue administration requests.
type fakeQueueAdmin struct {
	adminapi.Service
	lastStates []string
}

func (f *fakeQueueAdmin) Bounce(_ context.Context, r adminapi.BounceV1Request) (adminapi.BounceV1Response, error) {
	if err := adminapi.ValidateReason(r.Reason); err != nil {
		return adminapi.BounceV1Response{}, err
	}
	return adminapi.BounceV1Response{ID: "id-1", Bounced: map[string]int{"q": 2}, TotalBounced: 2}, nil
}

func (f *fakeQueueAdmin) ListSuspensions() []adminapi.SuspendV1ListEntry {
	return []adminapi.SuspendV1ListEntry{}
}

func (f *fakeQueueAdmin) CancelSuspension(id string) (bool, error) { return id == "known", nil }

func (f *fakeQueueAdmin) ReadyQueueStates(names []string) adminapi.ReadyQueueStateResponse {
	f.lastStates = names
	return adminapi.ReadyQueueStateResponse{StatesByReadyQueue: map[string]map[string]adminapi.QueueState{}}
}

// fakeBumper is an Admin that bumps config epochs.
type fakeBumper struct {
	Admin // unused methods panic
	bumps atomic.Int32
}

func (b *fakeBumper) BumpConfigEpoch() { b.bumps.Add(1) }

// TestQueueAdminEndpoints: KumoMTA's paths answer with its shapes and
// status codes: 503 before the spool is up, 422 for a request that fails
// validation, 404 for an unknown id, and the JSON of the service.
func TestQueueAdminEndpoints(t *testing.T) {
	bumper := &fakeBumper{}
	s, base := start(t, config.HTTPListener{}, Deps{Admin: bumper})
	c := http.DefaultClient
	if code, body, _ := do(t, c, "POST", base+"/api/admin/bounce/v1", strings.NewReader(`{"reason":"x","domain":"d"}`), nil); code != 503 || body != "Error: waiting for spool startup" {
		t.Fatalf("before start: %d %q", code, body)
	}
	q := &fakeQueueAdmin{}
	s.SetQueueAdmin(q)
	if code, body, _ := do(t, c, "POST", base+"/api/admin/bounce/v1", strings.NewReader(`{"reason":"x","domain":"d"}`), nil); code != 200 ||
		strings.TrimSpace(body) != `{"id":"id-1","bounced":{"q":2},"total_bounced":2}` {
		t.Fatalf("bounce: %d %q", code, body)
	}
	if code, body, _ := do(t, c, "POST", base+"/api/admin/bounce/v1", strings.NewReader(`{"domain":"d"}`), nil); code != 422 || !strings.Contains(body, "missing field `reason`") {
		t.Fatalf("bounce without reason: %d %q", code, body)
	}
	if code, body, _ := do(t, c, "POST", base+"/api/admin/bounce/v1", strings.NewReader(`{"reason":`), nil); code != 400 {
		t.Fatalf("bad JSON: %d %q", code, body)
	}
	if code, body, _ := do(t, c, "GET", base+"/api/admin/suspend/v1", nil, nil); code != 200 || strings.TrimSpace(body) != "[]" {
		t.Fatalf("suspend list: %d %q", code, body)
	}
	if code, _, _ := do(t, c, "DELETE", base+"/api/admin/suspend/v1", strings.NewReader(`{"id":"known"}`), nil); code != 200 {
		t.Fatalf("cancel: %d", code)
	}
	if code, body, _ := do(t, c, "DELETE", base+"/api/admin/suspend/v1", strings.NewReader(`{"id":"other"}`), nil); code != 404 || !strings.Contains(body, "other") {
		t.Fatalf("cancel unknown: %d %q", code, body)
	}
	if code, body, _ := do(t, c, "GET", base+"/api/admin/ready-q-states/v1?queues=a,b&queues=c", nil, nil); code != 200 ||
		strings.TrimSpace(body) != `{"states_by_ready_queue":{}}` || strings.Join(q.lastStates, " ") != "a b c" {
		t.Fatalf("ready-q-states: %d %q %v", code, body, q.lastStates)
	}
	if code, _, _ := do(t, c, "POST", base+"/api/admin/bump-config-epoch", nil, nil); code != 200 || bumper.bumps.Load() != 1 {
		t.Fatalf("bump-config-epoch: %d %d", code, bumper.bumps.Load())
	}

	// admin stays for trusted hosts only
	_, other := start(t, config.HTTPListener{TrustedHosts: config.MustCIDRList("10.0.0.0/8")}, Deps{Admin: bumper})
	if code, _, _ := do(t, c, "GET", other+"/api/admin/suspend/v1", nil, nil); code != 401 && code != 403 {
		t.Fatalf("untrusted: %d", code)
	}
}
