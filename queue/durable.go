package queue

import (
	"context"
	"time"
)

// Records as durable as the mail. kumogo syncs every accepted message
// before its 250 (see queue/spool's package doc); its log records get the
// same treatment, beyond KumoMTA, whose records are buffered:
//
//   - Insert, which the listener calls after the spool write and the
//     Reception record and before the 250, waits for a Sync of the records,
//     so an acknowledged message always has its Reception record; when the
//     spool stages writes, that Sync runs beside the spool's own flush in
//     one commit round (commit.go);
//   - a message that is finished (Delivery, Bounce or Expiration for its
//     last recipients) leaves the spool only after a Sync that covers its
//     record. The removals are handed to one goroutine that batches them
//     behind one Sync, joining the receptions' commit rounds, so
//     dispatchers never wait for the disk.
//
// A crash between the record and the removal delivers the message again
// after the restart: a duplicate, never a lost record. A log disk that
// fails costs records, not mail: a failed Sync is reported (at most once a
// minute) and neither refuses the message nor keeps it in the spool.

// syncTimeout bounds one Sync of the records.
const syncTimeout = 30 * time.Second

// removeBatch is the most removals one Sync covers.
const removeBatch = 512

// syncRecords makes the records logged so far durable, when the logger
// can sync.
func (m *Manager) syncRecords(ctx context.Context) {
	if m.syncer == nil || !m.o.Logger.Enabled() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, syncTimeout)
	defer cancel()
	if err := m.syncer.Sync(ctx); err != nil {
		m.syncFailed(err)
	}
}

// syncFailed reports a failed Sync at most once a minute.
func (m *Manager) syncFailed(err error) {
	now := time.Now().UnixNano()
	last := m.syncErrAt.Load()
	if now-last < int64(time.Minute) || !m.syncErrAt.CompareAndSwap(last, now) {
		return
	}
	m.log.Error().Err(err).Msg("log records could not be synced; messages go on without them")
}

// removeFinished takes a finished message out of the spool once its last
// record is durable.
func (m *Manager) removeFinished(id string) {
	if m.syncer == nil || !m.o.Logger.Enabled() {
		m.removeNow(id)
		return
	}
	if !m.started.Load() {
		m.removeNow(id)
		return
	}
	select {
	case <-m.removerDone:
	default:
		select {
		case m.removals <- id:
			return
		case <-m.removerDone:
		}
	}
	// the remover has stopped (shutdown): sync and remove here. A removal
	// that races with the stop stays for the next start, a duplicate
	// delivery at worst.
	m.syncRecords(context.Background())
	m.removeNow(id)
}

func (m *Manager) removeNow(id string) {
	if err := m.o.Spool.Remove(context.Background(), id); err != nil {
		m.log.Error().Err(err).Str("id", id).Msg("removing a finished message from the spool")
	}
}

// remover runs the removals: it takes what is queued (up to
// removeBatch), syncs the records once and removes the batch. It stops
// when stopRemover is closed, after the removals queued by then.
func (m *Manager) remover() {
	defer close(m.removerDone)
	batch := make([]string, 0, removeBatch)
	for {
		batch = batch[:0]
		select {
		case id := <-m.removals:
			batch = append(batch, id)
		case <-m.stopRemover:
			for {
				select {
				case id := <-m.removals:
					batch = append(batch, id)
					continue
				default:
				}
				break
			}
			if len(batch) > 0 {
				m.syncRecords(context.Background())
				m.removeGroup(batch)
			}
			return
		}
	more:
		for len(batch) < removeBatch {
			select {
			case id := <-m.removals:
				batch = append(batch, id)
			default:
				break more
			}
		}
		// in the same round as the receptions' commits (commit.go)
		_ = m.commit(context.Background(), false)
		m.removeGroup(batch)
	}
}

// RecordSyncer is the optional part of Logger that makes the records
// logged so far durable (the daemon's loggers implement it).
type RecordSyncer interface {
	Sync(ctx context.Context) error
}
