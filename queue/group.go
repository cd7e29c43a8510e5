package queue

import (
	"context"
	"fmt"
	"sync"

	"github.com/kumogo/kumogo/internal/message"
)

// Messages queued and removed in groups. The log hooks turn every log
// record into a message of the hook's queue (KumoMTA's configure_log_hook
// page: records take the normal queue path, with retries, max_age and the
// spool), several per mail. Writing each of them on its own (two pebble
// commits, one commit round) and removing each on its own (two more)
// cost the daemon more than the record; QueueGroup writes a whole group
// with one write per store and one commit round, and the remover deletes
// what one Sync covers with one operation per store.

// GroupSpool is the optional part of Spool that writes and removes
// messages in groups (implemented by queue/spool.Spools).
type GroupSpool interface {
	// StageGroup writes msgs as Stage writes one, all or none: they are
	// durable after the next Commit.
	StageGroup(ctx context.Context, msgs []*message.Message) error
	// RemoveGroup removes the messages of ids.
	RemoveGroup(ctx context.Context, ids []string) error
}

// QueueGroup spools msgs durably and inserts each into its scheduled
// queue, as Spool (not deferred) followed by Insert would, with one spool
// write per store and one commit round for the whole group when the spool
// stages groups. The result holds, for each message, nil or why it was not
// queued (its queue could not be resolved, or the spool failed: then it is
// not stored). A message stored but not inserted because the Manager is
// shutting down stays in the spool for the next start and counts as
// queued.
func (m *Manager) QueueGroup(ctx context.Context, msgs []*message.Message) []error {
	errs := make([]error, len(msgs))
	idx := make([]int, 0, len(msgs))
	var last string
	var lastErr error
	for i, msg := range msgs {
		if name := msg.QueueName(); i == 0 || name != last {
			last = name
			if _, err := m.schedQueue(ctx, name); err != nil {
				lastErr = fmt.Errorf("resolving queue %s: %w", name, &PolicyError{Err: err})
			} else {
				lastErr = nil
			}
		}
		if lastErr != nil {
			errs[i] = lastErr
			continue
		}
		idx = append(idx, i)
	}
	if len(idx) == 0 {
		return errs
	}
	gs, ok := m.o.Spool.(GroupSpool)
	if !ok || !m.staging() {
		m.queueEach(ctx, msgs, idx, errs)
		return errs
	}
	group := make([]*message.Message, len(idx))
	for k, i := range idx {
		group[k] = msgs[i]
	}
	fail := func(err error) []error {
		for _, i := range idx {
			errs[i] = err
		}
		return errs
	}
	if err := gs.StageGroup(ctx, group); err != nil {
		return fail(err)
	}
	if err := m.commit(ctx, true); err != nil {
		ids := make([]string, len(group))
		for k, msg := range group {
			ids[k] = msg.ID()
		}
		if rerr := gs.RemoveGroup(context.WithoutCancel(ctx), ids); rerr != nil {
			m.log.Error().Err(rerr).Msg("removing a group of messages whose commit failed")
		}
		return fail(err)
	}
	for _, msg := range group {
		if err := m.enqueue(ctx, msg); err != nil {
			// shutting down: stored, inserted at the next start
			m.log.Debug().Err(err).Str("id", msg.ID()).Msg("message left in the spool")
		}
	}
	return errs
}

// queueEach is QueueGroup for a spool without group writes: each message
// is spooled and inserted on its own, concurrently, so that they still
// share the spool's group commit.
func (m *Manager) queueEach(ctx context.Context, msgs []*message.Message, idx []int, errs []error) {
	var wg sync.WaitGroup
	for _, i := range idx {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg := msgs[i]
			if err := m.Spool(ctx, msg, false); err != nil {
				errs[i] = err
				return
			}
			if err := m.Insert(ctx, msg); err != nil {
				m.log.Debug().Err(err).Str("id", msg.ID()).Msg("message left in the spool")
			}
		}()
	}
	wg.Wait()
}

// removeGroup removes finished messages, in one operation per store when
// the spool takes groups.
func (m *Manager) removeGroup(ids []string) {
	gs, ok := m.o.Spool.(GroupSpool)
	if !ok || len(ids) == 1 {
		for _, id := range ids {
			m.removeNow(id)
		}
		return
	}
	if err := gs.RemoveGroup(context.Background(), ids); err != nil {
		m.log.Error().Err(err).Int("messages", len(ids)).Msg("removing finished messages from the spool")
	}
}
