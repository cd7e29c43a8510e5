package httpapi

import (
	"context"
	"fmt"
	"time"

	"github.com/kumogo/kumogo/internal/logrecord"
	"github.com/kumogo/kumogo/internal/message"
	"github.com/kumogo/kumogo/internal/smtpreply"
)

// Queuer is what QueueMessage needs: the spool, the queue and the logs.
type Queuer interface {
	Spool(ctx context.Context, msg *message.Message, deferred bool) error
	Insert(ctx context.Context, msg *message.Message) error
	Unspool(ctx context.Context, msg *message.Message)
	// Log writes a record about msg (Reception, internal Bounce).
	Log(rec *logrecord.Record, msg *message.Message)
	NodeID() string
}

// Reception says how QueueMessage records a message's arrival.
type Reception struct {
	// Protocol is the records' reception_protocol ("HTTP"; empty for a
	// message the policy made with kumo.make_message).
	Protocol string
	// Peer is the records' peer_address (nil: none).
	Peer *logrecord.PeerAddress
	// Deferred keeps the message in memory until its first delay
	// (deferred_spool).
	Deferred bool
	// BounceOnFailure logs KumoMTA's Bounce record "QueueManager::insert
	// failed during reception" when the message cannot be queued.
	BounceOnFailure bool
}

// QueueMessage spools msg, logs its Reception record and inserts it into
// its queue; queue "null" is logged and discarded. A message whose Insert
// fails is taken out of the spool again, so that nothing stays
// half-queued. POST /api/inject/v1 and kumo.inject_message both queue
// through it.
func QueueMessage(ctx context.Context, qr Queuer, msg *message.Message, r Reception) error {
	q := msg.QueueName()
	msg.ID()
	record := func(t logrecord.Type, resp smtpreply.Response) {
		qr.Log(&logrecord.Record{
			Type:              t,
			Queue:             q,
			Size:              int64(msg.Size()),
			Response:          resp,
			PeerAddress:       r.Peer,
			Timestamp:         time.Now(),
			Created:           msg.Created(),
			ReceptionProtocol: r.Protocol,
			NodeID:            qr.NodeID(),
		}, msg)
	}
	if q == "null" {
		record(logrecord.Reception, smtpreply.Response{Code: 250})
		return nil
	}
	if err := qr.Spool(ctx, msg, r.Deferred); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	record(logrecord.Reception, smtpreply.Response{Code: 250})
	if err := qr.Insert(ctx, msg); err != nil {
		qr.Unspool(ctx, msg)
		if r.BounceOnFailure {
			record(logrecord.Bounce, smtpreply.Response{Code: 500,
				Content: "KumoMTA internal: QueueManager::insert failed during reception: " + err.Error()})
		}
		return fmt.Errorf("queue insert: %w", err)
	}
	return nil
}
