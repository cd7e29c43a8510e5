package queue

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kumogo/kumogo/internal/event"
	"github.com/kumogo/kumogo/internal/logrecord"
	"github.com/kumogo/kumogo/internal/message"
	"github.com/kumogo/kumogo/internal/smtpreply"
)

// deferredInject moves a message out of message.DeferredInjectQueue (a
// deferred_queue listener received it) by running
// smtp_server_message_deferred_inject: on success the message is rebound
// to the queue its meta now names (a DeferredInjectionRebind record) and
// goes on there; a rejection of 500 or more bounces it; any other failure
// is a transient failure, retried from the internal queue every minute.
func (m *Manager) deferredInject(e *entry) {
	msg := e.msg
	e.dirty = true // the handler may change any meta
	// the handler sets the real queue, or the default naming applies
	msg.DeleteMeta("queue")
	var err error
	if dp, ok := m.o.Policy.(DeferredInjectPolicy); ok && m.o.Policy.HasHandler(event.DeferredInject) {
		ctx, cancel := context.WithTimeout(m.ctx, time.Minute)
		err = dp.DeferredInject(ctx, msg)
		cancel()
	}
	if err != nil {
		msg.SetMeta("queue", message.DeferredInjectQueue)
		resp := smtpreply.Response{Code: 400, Content: "smtp_server_message_deferred_inject: " + err.Error()}
		var rej *smtpreply.Rejection
		if errors.As(err, &rej) {
			resp = smtpreply.Response{Code: rej.Code, Content: rej.Text}
			if cl, sub, det, rest, ok := smtpreply.SplitEnhanced(rej.Text); ok {
				resp.Enhanced = &smtpreply.EnhancedCode{Class: cl, Subject: sub, Detail: det}
				resp.Content = rest
			}
		}
		if resp.Code >= 500 {
			m.finish(e, nil, nil, nil, logrecord.Bounce, resp, msg.Recipients())
			return
		}
		sq, _ := m.schedQueue(m.ctx, message.DeferredInjectQueue)
		m.transient(e, sq, nil, resp, "")
		return
	}
	e.queue = msg.QueueName()
	if e.queue == message.DeferredInjectQueue {
		msg.DeleteMeta("queue") // the handler put it back: use the default naming
		e.queue = msg.QueueName()
	}
	m.record(logrecord.DeferredInjectionRebind, e, nil, nil, smtpreply.Response{}, msg.Recipients())
	if e.queue == "null" {
		// as at reception: queue null discards the message
		if err := m.o.Spool.Remove(context.Background(), msg.ID()); err != nil {
			m.log.Error().Err(err).Str("id", msg.ID()).Msg("removing a message rebound to queue null from the spool")
		}
		return
	}
	m.promote(e)
}

// requeueEvent runs requeue_message for a transient failure. moved is true
// when the policy changed the message's queue (it is then due at once in
// its new queue); done is true when the policy rejected it (it bounced).
func (m *Manager) requeueEvent(e *entry, resp smtpreply.Response) (moved, done bool) {
	ep, ok := m.o.Policy.(EventPolicy)
	if !ok || !m.o.Policy.HasHandler(event.RequeueMessage) {
		return false, false
	}
	ctx, cancel := context.WithTimeout(m.ctx, time.Minute)
	defer cancel()
	before := e.msg.QueueName()
	e.dirty = true // the handler may change any meta
	err := ep.RequeueMessage(ctx, e.msg, resp.String(), []string{"TransientFailure"}, true, nil)
	var rej interface{ Closes() bool }
	if err != nil && errors.As(err, &rej) {
		m.finish(e, nil, nil, nil, logrecord.Bounce, smtpreply.Response{Code: 500, Content: err.Error()}, e.msg.Recipients())
		return false, true
	}
	if err != nil {
		m.log.Error().Err(err).Str("id", e.msg.ID()).Msg("requeue_message failed; keeping the message in its queue")
		return false, false
	}
	if after := e.msg.QueueName(); after != before {
		e.queue = after
		return true, false
	}
	return false, false
}

// rewriteStatus runs smtp_client_rewrite_delivery_status for a non-2xx
// response and applies a changed code, noting the change in the text.
func (m *Manager) rewriteStatus(e *entry, r smtpreply.Response) smtpreply.Response {
	if r.Code >= 200 && r.Code < 300 {
		return r
	}
	ep, ok := m.o.Policy.(EventPolicy)
	if !ok || !m.o.Policy.HasHandler(event.RewriteDeliveryStatus) {
		return r
	}
	p := message.ParseQueueName(e.queue)
	rd := p.Domain
	if p.HasRoutingDomain {
		rd = p.RoutingDomain
	}
	ctx, cancel := context.WithTimeout(m.ctx, time.Minute)
	defer cancel()
	code, changed, err := ep.RewriteDeliveryStatus(ctx, r.String(), p.Domain, p.Tenant, p.Campaign, rd)
	if err != nil {
		m.log.Error().Err(err).Msg("smtp_client_rewrite_delivery_status failed; status kept")
		return r
	}
	if changed && code != r.Code {
		r.Content = fmt.Sprintf("%s (kumomta: status was rewritten from %d -> %d)", r.Content, r.Code, code)
		r.Code = code
	}
	return r
}

// throttleEvent runs throttle_insert_ready_queue; when the policy pushed the
// message's due time into the future (for example with a throttle's
// delay_message_if_throttled) it is rescheduled without counting an
// attempt, and true is returned.
func (m *Manager) throttleEvent(e *entry) bool {
	ep, ok := m.o.Policy.(EventPolicy)
	if !ok || !m.o.Policy.HasHandler(event.ThrottleInsertReadyQueue) {
		return false
	}
	if !m.need(e) {
		return true // rescheduled or forgotten
	}
	ctx, cancel := context.WithTimeout(m.ctx, time.Minute)
	defer cancel()
	e.msg.SetDue(time.Time{})
	e.dirty = true // the handler may change any meta
	if err := ep.ThrottleInsertReadyQueue(ctx, e.msg); err != nil {
		m.log.Error().Err(err).Str("id", e.msg.ID()).Msg("throttle_insert_ready_queue failed")
		return false
	}
	if due := e.msg.Due(); !due.IsZero() && due.After(time.Now()) {
		m.undefer(ctx, e.msg)
		m.schedule(e, due)
		return true
	}
	return false
}
