package queue

import (
	"context"
	"time"

	"github.com/kumogo/kumogo/internal/message"
	"github.com/kumogo/kumogo/internal/smtpreply"
)

// BatchConn is a Conn that delivers several messages in one call (the
// custom_lua protocol's send_batch). The dispatcher gathers up to
// BatchSize messages, waiting at most MaxBatchLatency for MinBatchSize of
// them (KumoMTA's batch_size, min_batch_size and max_batch_latency).
type BatchConn interface {
	Conn
	// Batching returns the batch limits; size <= 1 means no batching.
	Batching() (size, minSize int, maxLatency time.Duration)
	// SendBatch delivers msgs and returns, for each, one response per
	// recipient. A non-nil error means the connection failed: every
	// message gets a transient failure.
	SendBatch(ctx context.Context, msgs []*message.Message) ([][]RcptResponse, error)
}

// BatchRoute is a Route whose connections take batches (custom_lua with
// batch_size > 1): knowing it before the first connection lets the ready
// queue start one dispatcher per batch rather than per message.
type BatchRoute interface {
	Route
	BatchSize() int
}

func routeBatch(r Route) int {
	if br, ok := r.(BatchRoute); ok {
		return br.BatchSize()
	}
	return 0
}

// gather collects a batch that starts with first: more messages are taken
// while they are ready, and while fewer than minSize are held the
// dispatcher waits for more until maxLatency has passed since it began.
func (rq *readyQueue) gather(ctx context.Context, first *entry, size, minSize int, maxLatency time.Duration) []*entry {
	batch := []*entry{first}
	deadline := time.Now().Add(maxLatency)
	for len(batch) < size && ctx.Err() == nil {
		wait := time.Duration(0)
		if len(batch) < minSize {
			wait = time.Until(deadline)
		}
		e := rq.pop(ctx, wait)
		if e == nil {
			if len(batch) >= minSize || wait <= 0 || !time.Now().Before(deadline) {
				break
			}
			continue
		}
		if rq.m.adminIntercept(e, rq.name) || rq.m.readySuspended(rq, e) {
			continue // bounced, or held by a suspension (admin.go)
		}
		batch = append(batch, e)
	}
	return batch
}

// sendBatch delivers a gathered batch on bc and records every outcome.
func (rq *readyQueue) sendBatch(ctx context.Context, bc BatchConn, batch []*entry) {
	msgs := make([]*message.Message, len(batch))
	for i, e := range batch {
		msgs[i] = e.msg
	}
	var results [][]RcptResponse
	var err error
	if bc.Usable() {
		results, err = bc.SendBatch(ctx, msgs)
	}
	if ctx.Err() != nil {
		return // shutting down: the messages stay in the spool
	}
	info := bc.Info()
	for i, e := range batch {
		var res []RcptResponse
		if err == nil && i < len(results) {
			res = results[i]
		}
		if len(res) == 0 {
			text := "connection unusable"
			if err != nil {
				text = err.Error()
			}
			for _, r := range e.msg.Recipients() {
				res = append(res, RcptResponse{Recipient: r, Response: smtpreply.Response{Code: 400, Content: "KumoMTA internal: failed to send message: " + text}})
			}
		}
		rq.handle(e, &info, res)
	}
}

// batchDispatchers is the dispatcher count for n ready messages when
// connections take batches of size: one per batch, within the
// connection limit.
func batchDispatchers(limit, n, size int) int {
	if size <= 1 {
		return Dispatchers(limit, n)
	}
	return Dispatchers(limit, (n+size-1)/size)
}
