package queue

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kumogo/kumogo/internal/adminapi"
	"github.com/kumogo/kumogo/internal/event"
	"github.com/kumogo/kumogo/internal/logrecord"
	"github.com/kumogo/kumogo/internal/message"
	"github.com/kumogo/kumogo/internal/smtpreply"
)

// RebindPolicy is the optional part of Policy that runs the
// rebind_message event (runtime.Runtime implements it).
type RebindPolicy interface {
	RebindMessage(ctx context.Context, msg *message.Message, data map[string]string) error
}

// MetaSaver is the optional part of Spool that rewrites a stored message's
// meta alone (queue/spool.Spools implements it), so that a rebound message
// keeps its new queue after a restart.
type MetaSaver interface {
	SaveMeta(ctx context.Context, msg *message.Message, sync bool) error
}

// Rebind serves POST /api/admin/rebind/v1 (KumoMTA's "rebind" page): the
// messages waiting in matching scheduled queues get the request's data
// as meta values, or are passed to the rebind_message event with it when
// trigger_rebind_event is set; a message whose queue name changed moves
// to its new queue with an AdminRebind record and is due at once (with
// always_flush every matched message is).
func (m *Manager) Rebind(ctx context.Context, req adminapi.RebindV1Request) (adminapi.RebindV1Response, error) {
	if err := adminapi.ValidateReason(req.Reason); err != nil {
		return adminapi.RebindV1Response{}, err
	}
	if req.Data == nil {
		return adminapi.RebindV1Response{}, adminapi.Invalid("missing field `data`")
	}
	sel := req.Selection()
	victims := m.takeWaiting(func(q string) bool {
		parts := message.ParseQueueName(q)
		return q != message.DeferredInjectQueue && matches(&sel, q, &parts)
	}, false)
	resp := adminapi.RebindV1Response{Matched: len(victims)}
	for _, e := range victims {
		if m.rebindOne(ctx, e, &req) {
			resp.Moved++
		}
	}
	m.log.Info().Int("matched", resp.Matched).Int("moved", resp.Moved).Str("reason", req.Reason).Msg("admin rebind")
	return resp, nil
}

// rebindOne applies a rebind to one message taken out of its scheduled
// queue and puts it back (into its new queue); it reports a move.
func (m *Manager) rebindOne(ctx context.Context, e *entry, req *adminapi.RebindV1Request) bool {
	if err := m.materialize(ctx, e); err != nil {
		if !errors.Is(err, errGone) {
			m.log.Error().Err(err).Str("id", e.ID()).Msg("reading a message to rebind from the spool; it keeps its queue")
			m.schedule(e, e.due)
		}
		return false
	}
	msg := e.msg
	if req.TriggerRebindEvent {
		if rp, ok := m.o.Policy.(RebindPolicy); ok && m.o.Policy.HasHandler(event.RebindMessage) {
			if err := rp.RebindMessage(ctx, msg, req.Data); err != nil {
				m.log.Error().Err(err).Str("id", msg.ID()).Msg("rebind_message failed; the message keeps its queue")
			}
		}
	} else {
		for k, v := range req.Data {
			msg.SetMeta(k, v)
		}
	}
	old, now := e.queue, msg.QueueName()
	if ms, ok := m.o.Spool.(MetaSaver); ok && !m.isDeferred(msg.ID()) {
		if err := ms.SaveMeta(ctx, msg, !m.o.NoSync); err != nil {
			m.log.Error().Err(err).Str("id", msg.ID()).Msg("saving a rebound message's meta")
			e.dirty = true
		}
	} else {
		e.dirty = true
	}
	moved := now != old
	if moved {
		e.queue = now
		if !req.SuppressLogging {
			m.adminRecord(logrecord.AdminRebind, e, "", smtpreply.Response{Code: 250,
				Content: fmt.Sprintf("Rebound from %s to %s: %s", old, now, req.Reason)})
		}
		if now == "null" {
			// as at reception: queue null discards the message
			if !m.dropDeferred(msg.ID()) {
				m.removeNow(msg.ID())
			}
			return true
		}
	}
	due := e.due
	if moved || req.AlwaysFlush {
		e.held = false
		due = time.Now()
	}
	m.schedule(e, due)
	return moved
}
