package queue

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kumogo/kumogo/internal/message"
	"github.com/kumogo/kumogo/internal/smtpreply"
)

// Spool resolves the message's scheduled queue (running get_queue_config)
// and stores the message durably. With deferred (the listener's
// deferred_spool) the message is only kept in memory: it is written the
// first time it has to wait for a retry, or at a graceful shutdown, and a
// message delivered at once never touches the disk.
func (m *Manager) Spool(ctx context.Context, msg *message.Message, deferred bool) error {
	if _, err := m.schedQueue(ctx, msg.QueueName()); err != nil {
		return fmt.Errorf("resolving queue %s: %w", msg.QueueName(), &PolicyError{Err: err})
	}
	if deferred {
		m.defMu.Lock()
		m.deferred[msg.ID()] = msg
		m.defMu.Unlock()
		return nil
	}
	if m.staging() {
		// made durable by Insert's commit, with the Reception record
		return m.o.Spool.(StagedSpool).Stage(ctx, msg)
	}
	return m.o.Spool.Save(ctx, msg, !m.o.NoSync)
}

// undefer writes a deferred message to the spool (before its first delay).
func (m *Manager) undefer(ctx context.Context, msg *message.Message) {
	if msg == nil {
		return // held compactly: stored already
	}
	m.defMu.Lock()
	_, ok := m.deferred[msg.ID()]
	delete(m.deferred, msg.ID())
	m.defMu.Unlock()
	if !ok {
		return
	}
	if err := m.o.Spool.Save(ctx, msg, !m.o.NoSync); err != nil {
		m.log.Error().Err(err).Str("id", msg.ID()).Msg("writing a deferred-spool message to the spool")
	}
}

// dropDeferred forgets a deferred message; it reports whether it was one
// (and so has nothing on disk to remove).
func (m *Manager) dropDeferred(id string) bool {
	m.defMu.Lock()
	defer m.defMu.Unlock()
	_, ok := m.deferred[id]
	delete(m.deferred, id)
	return ok
}

// DeferredCount is the number of accepted messages held only in memory.
func (m *Manager) DeferredCount() int {
	m.defMu.Lock()
	defer m.defMu.Unlock()
	return len(m.deferred)
}

// Insert puts a spooled message into its scheduled queue, due now. The
// listener calls it after the Reception record and before the 250: for a
// message written to the spool it first makes the message (when Spool
// staged it) and the records logged so far durable, in one commit round
// (commit.go). An error wrapping *SpoolError means the message is not
// durable: the caller removes it and refuses it.
func (m *Manager) Insert(ctx context.Context, msg *message.Message) error {
	if !m.isDeferred(msg.ID()) {
		if m.staging() {
			if err := m.commit(ctx, true); err != nil {
				return err
			}
		} else {
			m.syncRecords(ctx)
		}
	}
	return m.enqueue(ctx, msg)
}

// enqueue puts a durable (or deferred) message into its scheduled queue:
// the ready queue at once when it is due now.
func (m *Manager) enqueue(ctx context.Context, msg *message.Message) error {
	m.mu.Lock()
	closed := m.closed
	m.mu.Unlock()
	if closed {
		return errors.New("queue: shutting down")
	}
	e := &entry{msg: msg, queue: msg.QueueName(), index: -1}
	due := time.Now()
	if sch := msg.Scheduling(); sch != nil && sch.FirstAttempt.After(due) {
		due = sch.FirstAttempt
	}
	if d := msg.Scheduling().AdjustDue(due); d.After(time.Now()) {
		// set_scheduling: a later first attempt or a delivery window
		m.undefer(ctx, msg)
		m.schedule(e, d)
		return nil
	}
	m.promote(e)
	return nil
}

// Unspool removes a message whose insertion failed.
func (m *Manager) Unspool(ctx context.Context, msg *message.Message) {
	if err := m.o.Spool.Remove(ctx, msg.ID()); err != nil {
		m.log.Error().Err(err).Str("id", msg.ID()).Msg("removing message from spool")
	}
}

// Restore re-inserts a message found in the spool at start-up: its attempts
// are inferred from its age; a message older than max_age expires.
func (m *Manager) Restore(ctx context.Context, msg *message.Message) error {
	q := msg.QueueName()
	sq, err := m.schedQueue(ctx, q)
	if err != nil {
		return fmt.Errorf("resolving queue %s: %w", q, err)
	}
	age := time.Since(msg.Created())
	sch := msg.Scheduling()
	expired := age > sq.cfg.MaxAge
	if sch != nil && !sch.Expires.IsZero() {
		expired = sch.CheckExpiry(time.Now()) != nil
	}
	if expired {
		m.expire(&entry{msg: msg, queue: q}, sq, smtpreply.Response{Code: 551, Enhanced: &smtpreply.EnhancedCode{Class: 5, Subject: 4, Detail: 7},
			Content: ExpiryText(age, sq.cfg.MaxAge)})
		return nil
	}
	attempts, dueIn := InferAttempts(&sq.cfg, age)
	msg.SetAttempts(attempts)
	e := &entry{msg: msg, queue: q, index: -1}
	if attempts == 0 {
		dueIn = 0
	}
	due := time.Now().Add(dueIn)
	if sch != nil && sch.FirstAttempt.After(due) {
		due = sch.FirstAttempt
	}
	due = sch.AdjustDue(due)
	if !due.After(time.Now()) {
		m.promote(e)
		return nil
	}
	m.schedule(e, due)
	return nil
}

// isDeferred reports whether a message is held only in memory
// (deferred_spool), so its body must not be dropped.
func (m *Manager) isDeferred(id string) bool {
	m.defMu.Lock()
	defer m.defMu.Unlock()
	_, ok := m.deferred[id]
	return ok
}

// PolicyError is the failure of a policy event that reception runs for a
// message (get_queue_config, get_egress_pool), as opposed to a failure of
// the spool: the listener answers it as any other policy failure
// (KumoMTA's "421 4.3.0 <host> technical difficulties", or the reply of a
// kumo.reject, and a Rejection record).
type PolicyError struct{ Err error }

func (e *PolicyError) Error() string { return e.Err.Error() }
func (e *PolicyError) Unwrap() error { return e.Err }

// PolicyFailure tells the listener, which does not import this package,
// that the error came from the policy.
func (e *PolicyError) PolicyFailure() bool { return true }
