package queue

import (
	"context"
	"encoding/hex"
	"errors"
	"time"

	"github.com/kumogo/kumogo/internal/message"
)

// A message that waits for a later attempt is held compactly: its entry
// keeps the spool id, the queue name (shared with the other entries of its
// scheduled queue), the due time and the attempt count, and lets go of the
// message itself (envelope, metadata map and body), which the spool holds
// anyway. The message is read back from the spool (Spool.Load) when it is
// due, or when an administrator's action needs it. A million waiting
// messages then cost about a hundred bytes each instead of their metadata
// maps (kilobytes). Attempts are not part of the stored record (KumoMTA's
// neither: a restart infers them from age), so the entry keeps them.
//
// What the queue changed in memory and the spool does not know yet (fewer
// recipients after a partial delivery, meta set by requeue_message,
// throttle_insert_ready_queue or smtp_server_message_deferred_inject) marks
// the entry dirty; its meta record is rewritten before the message is let
// go (unsynced: a crash before the next sync loses that change as it
// always did, which means at worst a duplicate delivery).

// compactAfter is how far in the future a message must be due before it is
// held compactly.
const compactAfter = 2 * time.Second

// ID returns the spool id of e's message.
func (e *entry) ID() string {
	if e.msg != nil {
		return e.msg.ID()
	}
	return hex.EncodeToString(e.id[:])
}

// Attempts returns the delivery attempts made so far.
func (e *entry) Attempts() int {
	if e.msg != nil {
		return e.msg.Attempts()
	}
	return int(e.attempts)
}

// compact lets go of e's message when the spool can give it back; the
// caller owns e (it is in no heap or queue).
func (m *Manager) compact(e *entry) {
	if e.msg == nil || m.isDeferred(e.msg.ID()) {
		return
	}
	var id [16]byte
	if s := e.msg.ID(); len(s) != 32 || hexDecode(id[:], s) != nil {
		return // not a spool id kumogo made: keep the message
	}
	if e.dirty {
		ms, ok := m.o.Spool.(MetaSaver)
		if !ok {
			return
		}
		if err := ms.SaveMeta(context.Background(), e.msg, false); err != nil {
			m.log.Warn().Err(err).Str("id", e.msg.ID()).Msg("saving a waiting message's meta; it stays in memory")
			return
		}
		e.dirty = false
	}
	e.id = id
	e.attempts = int32(min(e.msg.Attempts(), 1<<30))
	e.windowed = e.msg.Scheduling() != nil
	e.msg = nil
}

func hexDecode(dst []byte, s string) error {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return errors.New("not lowercase hex")
		}
	}
	_, err := hex.Decode(dst, []byte(s))
	return err
}

// errGone reports a compact entry whose message is no longer in the spool.
var errGone = errors.New("the message is no longer in the spool")

// materialize reads a compactly held message back from the spool. A
// message that is not there any more (removed by hand, or its data lost)
// gives errGone: the caller forgets the entry.
func (m *Manager) materialize(ctx context.Context, e *entry) error {
	if e.msg != nil {
		return nil
	}
	id := hex.EncodeToString(e.id[:])
	msg, err := m.o.Spool.Load(ctx, id)
	if err != nil {
		if isNotFound(err) {
			m.log.Error().Err(err).Str("id", id).Msg("a waiting message is no longer in the spool; forgotten")
			return errGone
		}
		return err
	}
	msg.SetAttempts(int(e.attempts))
	e.msg = msg
	return nil
}

// need reads e's message back for a step that uses it; false when it
// could not be read: e is then scheduled again in a minute, or forgotten
// when its message is no longer stored.
func (m *Manager) need(e *entry) bool {
	err := m.materialize(m.ctx, e)
	if err == nil {
		return true
	}
	if m.ctx.Err() == nil && !errors.Is(err, errGone) {
		m.log.Error().Err(err).Str("id", e.ID()).Msg("reading a queued message back from the spool; retrying in a minute")
		m.schedule(e, time.Now().Add(time.Minute))
	}
	return false
}

// internQueue returns the name of the scheduled queue q as the queue map
// holds it, so that the waiting entries of one queue share one string; the
// caller holds m.mu.
func (m *Manager) internQueue(q string) string {
	if sq := m.sched[q]; sq != nil {
		return sq.name
	}
	return q
}

// RestoreCompact re-inserts a message found in the spool at start-up from
// the few fields a restart needs (its id, queue and set_scheduling
// constraints), without building the message: it is read from the spool
// when due. Attempts are inferred from age as in Restore; a message past
// its max_age is loaded to be expired with its record.
func (m *Manager) RestoreCompact(ctx context.Context, id, queueName string, sch *message.Scheduling) error {
	var bid [16]byte
	if len(id) != 32 || hexDecode(bid[:], id) != nil {
		return errors.New("queue: restore " + id + ": not a spool id")
	}
	sq, err := m.schedQueue(ctx, queueName)
	if err != nil {
		return err
	}
	created, err := message.IDTime(id)
	if err != nil {
		return err
	}
	now := time.Now()
	age := now.Sub(created)
	expired := age > sq.cfg.MaxAge
	if sch != nil && !sch.Expires.IsZero() {
		expired = sch.CheckExpiry(now) != nil
	}
	if expired {
		msg, err := m.o.Spool.Load(ctx, id)
		if err != nil {
			return err
		}
		return m.Restore(ctx, msg)
	}
	attempts, dueIn := InferAttempts(&sq.cfg, age)
	if attempts == 0 {
		dueIn = 0
	}
	due := now.Add(dueIn)
	if sch != nil && sch.FirstAttempt.After(due) {
		due = sch.FirstAttempt
	}
	due = sch.AdjustDue(due)
	e := &entry{id: bid, attempts: int32(attempts), queue: sq.name, index: -1}
	// due or not, the timer loop promotes it: enumeration does not wait
	// for spool reads and deliveries
	m.schedule(e, due)
	return nil
}

// isNotFound reports an error of Spool.Load for an id that is not stored.
func isNotFound(err error) bool {
	var nf interface{ NotFound() bool }
	return errors.As(err, &nf) && nf.NotFound()
}
