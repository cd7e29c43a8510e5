package queue

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/kumogo/kumogo/internal/adminapi"
)

// Ready queue states for GET /api/admin/ready-q-states/v1. KumoMTA
// reports "connection_rate_throttled" while max_connection_rate holds new
// connections back and "connection_limited" while its connection limits
// do; kumogo keeps the first (its connection limit only bounds the
// dispatcher count, so nothing waits on it).

// waitConnRate waits for a connection slot of max_connection_rate, noting
// the throttled state while it waits; false when ctx ended.
func (rq *readyQueue) waitConnRate(ctx context.Context, r *namedRate) bool {
	if r == nil {
		return true
	}
	res := rq.m.limits.Throttle(ctx, r.name, r.spec)
	for res.Throttled {
		rq.mu.Lock()
		if rq.states == nil {
			rq.states = map[string]adminapi.QueueState{}
		}
		rq.states["connection_rate_throttled"] = adminapi.QueueState{
			Context: fmt.Sprintf("max_connection_rate throttling for %s", res.RetryAfter.Round(time.Millisecond)), Since: time.Now().UTC()}
		rq.mu.Unlock()
		if !sleepCtx(ctx, max(res.RetryAfter, time.Millisecond)) {
			return false
		}
		res = rq.m.limits.Throttle(ctx, r.name, r.spec)
	}
	rq.mu.Lock()
	delete(rq.states, "connection_rate_throttled")
	rq.mu.Unlock()
	return true
}

// ReadyQueueStates serves GET /api/admin/ready-q-states/v1: the states of
// the named ready queues (all when names is empty) that have any.
func (m *Manager) ReadyQueueStates(names []string) adminapi.ReadyQueueStateResponse {
	m.mu.Lock()
	rqs := make([]*readyQueue, 0, len(m.ready))
	for name, rq := range m.ready {
		if len(names) == 0 || slices.Contains(names, name) {
			rqs = append(rqs, rq)
		}
	}
	m.mu.Unlock()
	out := adminapi.ReadyQueueStateResponse{StatesByReadyQueue: map[string]map[string]adminapi.QueueState{}}
	for _, rq := range rqs {
		rq.mu.Lock()
		if len(rq.states) > 0 {
			out.StatesByReadyQueue[rq.name] = maps.Clone(rq.states)
		}
		rq.mu.Unlock()
	}
	return out
}
