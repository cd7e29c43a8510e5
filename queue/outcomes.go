package queue

import (
	"context"
	"fmt"
	"time"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/logrecord"
	"github.com/kumogo/kumogo/internal/message"
	"github.com/kumogo/kumogo/internal/smtpreply"
)

// record writes one log record for rcpts of e.
func (m *Manager) record(t logrecord.Type, e *entry, rq *readyQueue, info *ConnInfo, resp smtpreply.Response, rcpts []message.Address) {
	if m.o.Logger == nil || !m.o.Logger.Enabled() {
		return
	}
	list := make([]string, len(rcpts))
	for i, r := range rcpts {
		list[i] = r.String()
	}
	rp, _ := e.msg.MetaString("reception_protocol")
	rec := &logrecord.Record{
		Type:              t,
		ID:                e.msg.ID(),
		Sender:            e.msg.Sender().String(),
		Recipient:         list,
		Queue:             e.queue,
		Size:              int64(e.msg.Size()),
		Response:          smtpreply.Response{Code: resp.Code, Enhanced: resp.Enhanced, Content: resp.Content, Command: resp.Command},
		Timestamp:         time.Now(),
		Created:           e.msg.Created(),
		NumAttempts:       e.msg.Attempts(),
		ReceptionProtocol: rp,
		NodeID:            m.o.NodeID,
	}
	if m.o.Classifier != nil && (t == logrecord.Bounce || t == logrecord.TransientFailure) {
		rec.BounceClassification = m.o.Classifier.Classify(resp.String())
	}
	if rq != nil {
		rec.Site = rq.name
		// the source and pool change under rq.mu when the path is
		// refreshed (update) while dispatchers still record outcomes
		rq.mu.Lock()
		rec.EgressSource = rq.src.Name
		rec.EgressPool = rq.pool
		rq.mu.Unlock()
		rec.DeliveryProtocol = "ESMTP"
	}
	if info != nil {
		rec.PeerAddress = &logrecord.PeerAddress{Name: info.PeerName, Addr: info.PeerAddr}
		if info.SourceAddr != "" {
			rec.SourceAddress = &logrecord.SourceAddress{Address: info.SourceAddr, Server: info.ProxyServer, Protocol: info.ProxyProtocol}
		}
		rec.TLSCipher = info.TLSCipher
		rec.TLSProtocolVersion = info.TLSVersion
		rec.SessionID = info.SessionID
		if info.DeliveryProtocol != "" {
			rec.DeliveryProtocol = info.DeliveryProtocol
		}
	}
	m.o.Logger.Log(rec, e.msg)
}

// finish logs a final disposition for rcpts and removes the message from the
// spool when no recipient is left.
func (m *Manager) finish(e *entry, sq *schedQueue, rq *readyQueue, info *ConnInfo, t logrecord.Type, resp smtpreply.Response, rcpts []message.Address) {
	m.record(t, e, rq, info, resp, rcpts)
	if rq != nil && t == logrecord.Delivery {
		rq.noteDelivered()
	}
	remaining := withoutRecipients(e.msg.Recipients(), rcpts)
	if len(remaining) > 0 {
		e.msg.SetRecipients(remaining)
		e.dirty = true // the stored record still lists them all
		return
	}
	if m.dropDeferred(e.msg.ID()) {
		return
	}
	m.removeFinished(e.msg.ID())
}

func withoutRecipients(all, done []message.Address) []message.Address {
	if len(done) == len(all) {
		return nil
	}
	var out []message.Address
	for _, a := range all {
		found := false
		for _, d := range done {
			if a == d {
				found = true
				break
			}
		}
		if !found {
			out = append(out, a)
		}
	}
	return out
}

// transient logs a TransientFailure and reschedules the message with
// backoff, or expires it when the next attempt would exceed max_age.
func (m *Manager) transient(e *entry, sq *schedQueue, rq *readyQueue, resp smtpreply.Response, _ string) {
	m.transientWithInfo(e, sq, rq, nil, resp)
}

func (m *Manager) transientWithInfo(e *entry, sq *schedQueue, rq *readyQueue, info *ConnInfo, resp smtpreply.Response) {
	m.record(logrecord.TransientFailure, e, rq, info, resp, e.msg.Recipients())
	if rq != nil {
		rq.noteRetry(e.queue)
	}
	if moved, done := m.requeueEvent(e, resp); done {
		return
	} else if moved {
		e.msg.IncrementAttempts()
		m.undefer(context.Background(), e.msg)
		m.promote(e)
		return
	}
	cfg := config.DefaultQueueConfig()
	if sq != nil {
		cfg = sq.cfg
	}
	m.mu.Lock()
	delay := NextDelay(&cfg, e.msg.Attempts(), m.rnd)
	closed := m.closed
	m.mu.Unlock()
	e.msg.IncrementAttempts()
	age := time.Since(e.msg.Created())
	sch := e.msg.Scheduling()
	due := sch.AdjustDue(time.Now().Add(delay))
	if sch != nil && !sch.Expires.IsZero() {
		// set_scheduling's expires replaces max_age
		if sch.CheckExpiry(due) != nil {
			m.expire(e, sq, smtpreply.Response{Code: 551, Enhanced: &smtpreply.EnhancedCode{Class: 5, Subject: 4, Detail: 7},
				Content: fmt.Sprintf("Next delivery time would be at %s which exceeds the expiry time %s configured via set_scheduling",
					due.UTC().Format(time.RFC3339), sch.Expires.UTC().Format(time.RFC3339))})
			return
		}
	} else if age+delay > cfg.MaxAge {
		m.expire(e, sq, smtpreply.Response{Code: 551, Enhanced: &smtpreply.EnhancedCode{Class: 5, Subject: 4, Detail: 7},
			Content: ExpiryText(age+delay, cfg.MaxAge)})
		return
	}
	m.undefer(context.Background(), e.msg)
	if closed {
		return // stays in the spool for the next start
	}
	m.schedule(e, due)
}

func (m *Manager) expire(e *entry, sq *schedQueue, resp smtpreply.Response) {
	m.record(logrecord.Expiration, e, nil, nil, resp, e.msg.Recipients())
	if m.dropDeferred(e.msg.ID()) {
		return
	}
	m.removeFinished(e.msg.ID())
}

// outcome applies one response to the given recipients of e.
func (m *Manager) outcome(e *entry, rq *readyQueue, info *ConnInfo, resp smtpreply.Response, rcpts []message.Address) {
	sq := m.schedFor(e.queue)
	switch classify(resp) {
	case logrecord.Delivery:
		m.finish(e, sq, rq, info, logrecord.Delivery, resp, rcpts)
	case logrecord.Bounce:
		m.finish(e, sq, rq, info, logrecord.Bounce, resp, rcpts)
	default:
		e.dirty = e.dirty || len(rcpts) != len(e.msg.Recipients())
		e.msg.SetRecipients(rcpts)
		m.transientWithInfo(e, sq, rq, info, resp)
	}
}

// schedFor returns the scheduled queue of a message that left it for a
// ready queue. The queue may have been reaped meanwhile (reap.go): it is
// made again, so that the retry follows the policy's get_queue_config and
// not the defaults. nil when the policy fails (the defaults apply).
func (m *Manager) schedFor(name string) *schedQueue {
	m.mu.Lock()
	sq := m.sched[name]
	m.mu.Unlock()
	if sq != nil || name == message.DeferredInjectQueue {
		return sq
	}
	sq, err := m.schedQueue(m.ctx, name)
	if err != nil {
		if m.ctx.Err() == nil {
			m.log.Warn().Err(err).Str("queue", name).Msg("get_queue_config failed for a delivery outcome; the default retry schedule applies")
		}
		return nil
	}
	return sq
}

// classify maps a response to the record type of its outcome
// (smtpreply.Classify).
func classify(r smtpreply.Response) logrecord.Type {
	switch r.Outcome() {
	case smtpreply.Delivery:
		return logrecord.Delivery
	case smtpreply.Bounce:
		return logrecord.Bounce
	}
	return logrecord.TransientFailure
}

// handle groups per-recipient results by identical response and records
// them; recipients with transient failures are retried together.
func (rq *readyQueue) handle(e *entry, info *ConnInfo, results []RcptResponse) {
	m := rq.m
	type group struct {
		resp  smtpreply.Response
		rcpts []message.Address
	}
	var groups []group
	for i := range results {
		results[i].Response = m.rewriteStatus(e, results[i].Response)
	}
	for _, r := range results {
		found := false
		for i := range groups {
			if groups[i].resp.Equal(r.Response) {
				groups[i].rcpts = append(groups[i].rcpts, r.Recipient)
				found = true
				break
			}
		}
		if !found {
			groups = append(groups, group{resp: r.Response, rcpts: []message.Address{r.Recipient}})
		}
	}
	sq := m.schedFor(e.queue)
	var retry []message.Address
	var retryResp *smtpreply.Response
	for _, g := range groups {
		switch classify(g.resp) {
		case logrecord.TransientFailure:
			retry = append(retry, g.rcpts...)
			r := g.resp
			retryResp = &r
		default:
			m.finish(e, sq, rq, info, classify(g.resp), g.resp, g.rcpts)
		}
	}
	if len(retry) > 0 {
		e.dirty = e.dirty || len(retry) != len(e.msg.Recipients())
		e.msg.SetRecipients(retry)
		m.transientWithInfo(e, sq, rq, info, *retryResp)
	}
}
