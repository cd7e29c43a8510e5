package smtpd

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/kumogo/kumogo/internal/message"
)

// receive runs the DATA-time events for transaction t of client c and
// disposes of the resulting messages. On success the ids of the accepted
// messages are in t.idsBuf, and partial tells that some batches failed. An
// error is a reply (*smtp.SMTPError) or a policy error, which Data turns
// into one (policyReply). bp holds the body with message.Headroom spare
// bytes in front; receive owns it from here on.
//
// Messages come from the message pool. One whose queue is "null" (or that
// is refused for want of a queue) is released back to it once its
// Reception record is written: nothing refers to it then (the logger reads
// it during Log, Lua handles end with their event). Messages handed to the
// queue are never released here.
func (s *Server) receive(ctx context.Context, t *txn, c *client, bp *[]byte) (partial bool, err error) {
	p := s.deps.Policy
	msg := message.Acquire(s.deps.IDs, t.from, t.rcpts, *bp, message.Headroom)
	msg.CopyConnMeta(c.meta)
	bufs := append(t.bufs[:0], bp)
	msgs := t.msgs[:0]
	defer func() {
		clear(msgs)
		t.msgs = msgs[:0]
		clear(bufs)
		t.bufs = bufs[:0]
	}()
	fail := func(err error) (bool, error) {
		for _, b := range bufs {
			putBuf(b)
		}
		if len(msgs) == 0 {
			msg.Release()
		}
		for _, m := range msgs {
			m.Release()
		}
		if errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
			s.log.Warn().Err(err).Str("peer", c.peer.String()).Msg("data_processing_timeout exceeded")
			return false, rep(451, "4.4.5 data_processing_timeout exceeded (rx)")
		}
		return false, err
	}

	if plan := t.reports; plan.oob != "" || plan.arf != "" || !plan.relay {
		drop, err := s.checkReports(ctx, c, msg, plan)
		if err != nil {
			return fail(err)
		}
		if drop { // logged (OOB or Feedback) and not to be relayed
			t.idsBuf = msg.AppendID(t.idsBuf[:0])
			for _, b := range bufs {
				putBuf(b)
			}
			msg.Release()
			return false, nil
		}
	}
	if s.hasData {
		if err := p.Data(ctx, msg, c.meta); err != nil {
			return fail(err)
		}
	}
	var batches [][]message.Address
	if s.hasSplit {
		var err error
		if batches, err = p.SplitTransaction(ctx, msg, c.meta); err != nil {
			return fail(err)
		}
	}
	if batches == nil {
		batches = defaultBatches(t.batches[:0], msg.Recipients(), c.cfg.BatchHandling)
		defer func() {
			clear(batches)
			t.batches = batches[:0]
		}()
	}

	now := time.Now().UTC()
	// The body as received; trace headers go into headroom in front of it,
	// so this slice keeps showing the untouched data for later batches.
	orig := msg.Data()
	for i, b := range batches {
		m := msg
		if i == 0 {
			m.SetRecipients(b)
		} else {
			nb := getBuf()
			*nb = append(*nb, orig...)
			bufs = append(bufs, nb)
			m = message.Acquire(s.deps.IDs, msg.Sender(), b, *nb, message.Headroom)
			for k, v := range msg.MetaMap() {
				m.SetMeta(k, v)
			}
		}
		if c.cfg.TraceHeaders.ReceivedHeader {
			proto := "ESMTP"
			if c.tls != nil {
				proto = "ESMTPS"
				if c.authed {
					proto = "ESMTPSA"
				}
			}
			t.hdrBuf = m.AppendReceived(t.hdrBuf[:0], c.helo, c.peerIP, c.cfg.Hostname, c.localIP, proto, c.tlsInfo(), now)
			m.PrependRaw(t.hdrBuf)
		}
		msgs = append(msgs, m)
	}

	switch {
	case c.cfg.DeferredQueue:
		// deferred_queue: smtp_server_message_received is not called; the
		// messages wait in the internal queue for
		// smtp_server_message_deferred_inject
		for _, m := range msgs {
			m.SetMeta("queue", message.DeferredInjectQueue)
		}
	case s.hasReceived:
		for _, m := range msgs {
			if err := p.MessageReceived(ctx, m, c.meta); err != nil {
				return fail(err)
			}
		}
	}

	ids := t.idsBuf[:0] // of the accepted messages, space separated
	accepted, failed := 0, 0
	var spoolErr, policyErr error
	var keep []*[]byte
	addID := func(m *message.Message) {
		if accepted > 0 {
			ids = append(ids, ' ')
		}
		ids = m.AppendID(ids)
		accepted++
	}
	for i, m := range msgs {
		q := m.QueueName()
		if q == "null" {
			s.logReception(c, t, m, q)
			addID(m)
			m.Release()
			continue
		}
		if s.deps.Enqueuer == nil {
			failed++
			s.log.Warn().Str("queue", q).Str("id", m.ID()).Msg("no queue is configured for non-null queues; message refused")
			m.Release()
			continue
		}
		// The queue may read the id from several goroutines: make the
		// string now, while the message is still ours alone.
		m.ID()
		if c.cfg.TraceHeaders.SupplementalHeader {
			m.PrependHeader(c.cfg.TraceHeaders.HeaderName, supplemental(m, c.cfg.TraceHeaders.IncludeMetaNames))
		}
		if err := s.deps.Enqueuer.Spool(ctx, m, c.cfg.DeferredSpool); err != nil {
			failed++
			var pe interface{ PolicyFailure() bool }
			if errors.As(err, &pe) {
				policyErr = err // get_queue_config failed: not the spool's fault
				continue
			}
			spoolErr = err
			s.log.Error().Err(err).Str("queue", q).Str("id", m.ID()).Msg("spool write failed")
			continue
		}
		s.logReception(c, t, m, q)
		if err := s.deps.Enqueuer.Insert(ctx, m); err != nil {
			failed++
			var sf interface{ SpoolFailure() bool }
			if errors.As(err, &sf) {
				// the spool's commit failed: not durable, as a failed write
				spoolErr = err
			}
			s.deps.Enqueuer.Unspool(ctx, m)
			s.logInternalBounce(c, m, q, "KumoMTA internal: QueueManager::insert failed during reception: "+err.Error())
			s.log.Error().Err(err).Str("queue", q).Str("id", m.ID()).Msg("queue insert failed")
			continue
		}
		addID(m)
		if i < len(bufs) {
			// the queue owns this buffer now
			keep = append(keep, bufs[i])
		}
	}
	for _, b := range bufs {
		if !contains(keep, b) {
			putBuf(b)
		}
	}
	t.idsBuf = ids
	switch {
	case failed == 0:
		return false, nil
	case accepted > 0:
		return true, nil
	case s.deps.Enqueuer == nil:
		return false, rep(451, "4.3.0 "+c.cfg.Hostname+" only queue \"null\" is available: no delivery engine is configured")
	case ctx.Err() != nil:
		return false, rep(451, "4.4.5 data_processing_timeout exceeded (spool)")
	case policyErr != nil:
		return false, policyErr
	case spoolErr != nil:
		return false, rep(421, "4.3.2 "+c.cfg.Hostname+" the spool is not accepting writes. Try later")
	default:
		return false, rep(421, textTechnicalDifficulties(c.cfg.Hostname))
	}
}

func contains(list []*[]byte, b *[]byte) bool {
	for _, x := range list {
		if x == b {
			return true
		}
	}
	return false
}

// defaultBatches splits recipients per batch_handling, appending to
// out[:0]: one message per recipient (BifurcateAlways) or per lower-cased
// domain (BatchByDomain).
func defaultBatches(out [][]message.Address, rcpts []message.Address, mode string) [][]message.Address {
	out = out[:0]
	if mode != "BatchByDomain" {
		for i := range rcpts {
			out = append(out, rcpts[i:i+1:i+1])
		}
		return out
	}
	idx := map[string]int{}
	for _, r := range rcpts {
		d := strings.ToLower(r.Domain)
		if i, ok := idx[d]; ok {
			out[i] = append(out[i], r)
			continue
		}
		idx[d] = len(out)
		out = append(out, []message.Address{r})
	}
	return out
}

func supplemental(m *message.Message, include []string) string {
	rc := m.Recipients()
	list := make([]string, len(rc))
	for i, r := range rc {
		list[i] = r.String()
	}
	var extra map[string]any
	for _, name := range include {
		if v, ok := m.Meta(name); ok {
			if extra == nil {
				extra = map[string]any{}
			}
			extra[name] = v
		}
	}
	return message.SupplementalValue(list, extra)
}
