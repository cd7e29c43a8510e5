package loghook

import (
	"context"
	"time"

	"github.com/kumogo/kumogo/internal/message"
)

// GroupQueue is the optional part of Queue that spools many records with
// one spool write and one commit round and inserts them (implemented by
// queue.Manager). The result holds nil, or why the message was not
// queued, for each message.
type GroupQueue interface {
	QueueGroup(ctx context.Context, msgs []*message.Message) []error
}

// maxGroup is the most records one spool write takes.
const maxGroup = 256

// groupWorkers is the worker count with a GroupQueue: a group collects
// the records that arrived while the workers were busy, so that fewer
// workers make larger groups; two or more let one run the policy while
// another waits for its commit.
const groupWorkers = 4

// workGroups takes the records waiting (up to maxGroup), runs the policy
// for each and queues those it keeps as one group.
func (h *Hook) workGroups(gq GroupQueue) {
	jobs := make([]job, 0, maxGroup)
	msgs := make([]*message.Message, 0, maxGroup)
	for j := range h.jobs {
		jobs = append(jobs[:0], j)
	more:
		for len(jobs) < maxGroup {
			select {
			case j, ok := <-h.jobs:
				if !ok {
					break more
				}
				jobs = append(jobs, j)
			default:
				break more
			}
		}
		msgs = h.handleGroup(h.ctx, gq, jobs, msgs[:0])
		clear(msgs)
	}
}

// handleGroup turns jobs into messages, keeps those the policy queues and
// queues them as one group; msgs is scratch space, returned for reuse.
func (h *Hook) handleGroup(ctx context.Context, gq GroupQueue, jobs []job, msgs []*message.Message) []*message.Message {
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for _, j := range jobs {
		if msg := h.decide(cctx, j); msg != nil {
			msgs = append(msgs, msg)
		}
	}
	if len(msgs) == 0 {
		return msgs
	}
	for i, err := range gq.QueueGroup(cctx, msgs) {
		if err != nil {
			h.Failed.Add(1)
			h.log.Error().Err(err).Str("queue", msgs[i].QueueName()).Msg("spooling a log record failed; the record is dropped")
			continue
		}
		h.Queued.Add(1)
	}
	return msgs
}
