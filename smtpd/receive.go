package smtpd

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/kumogo/kumogo/internal/message"
)

// receive runs the DATA-time events for one transaction and disposes of the
// resulting messages. It returns the reply for the DATA (or last BDAT)
// command: nil for success, whose text (in fc.dataReply) the front end puts
// in place of go-smtp's. bp holds the body with message.Headroom spare bytes
// in front; receive owns it from here on.
//
// Messages come from the message pool. One whose queue is "null" (or that
// is refused for want of a queue) is released back to it once its
// Reception record is written: nothing refers to it then (the logger reads
// it during Log, Lua handles end with their event). Messages handed to the
// queue are never released here.
func (s *Server) receive(ctx context.Context, fc *frontConn, from message.Address, rcpts []message.Address, bp *[]byte) error {
	p := s.deps.Policy
	msg := message.Acquire(s.deps.IDs, from, rcpts, *bp, message.Headroom)
	msg.CopyConnMeta(fc.meta)
	bufs := append(fc.bufs[:0], bp)
	msgs := fc.msgs[:0]
	defer func() {
		clear(msgs)
		fc.msgs = msgs[:0]
		clear(bufs)
		fc.bufs = bufs[:0]
	}()
	fail := func(err error) error {
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
			s.log.Warn().Err(err).Str("peer", fc.peer.String()).Msg("data_processing_timeout exceeded")
			return reply(451, "4.4.5 data_processing_timeout exceeded (rx)")
		}
		ss := &session{fc: fc, s: s}
		return ss.policyErr(err)
	}

	if plan := fc.reports; plan.oob != "" || plan.arf != "" || !plan.relay {
		drop, err := s.checkReports(ctx, fc, msg, plan)
		if err != nil {
			return fail(err)
		}
		if drop { // logged (OOB or Feedback) and not to be relayed
			fc.idsBuf = msg.AppendID(fc.idsBuf[:0])
			fc.setDataReply("OK ids=", fc.idsBuf)
			for _, b := range bufs {
				putBuf(b)
			}
			msg.Release()
			return nil
		}
	}
	if s.hasData {
		if err := p.Data(ctx, msg, fc.meta); err != nil {
			return fail(err)
		}
	}
	var batches [][]message.Address
	if s.hasSplit {
		var err error
		if batches, err = p.SplitTransaction(ctx, msg, fc.meta); err != nil {
			return fail(err)
		}
	}
	if batches == nil {
		batches = defaultBatches(fc.batches[:0], msg.Recipients(), fc.cfg.BatchHandling)
		defer func() {
			clear(batches)
			fc.batches = batches[:0]
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
		if fc.cfg.TraceHeaders.ReceivedHeader {
			proto := "ESMTP"
			if fc.tls != nil {
				proto = "ESMTPS"
				if fc.authed {
					proto = "ESMTPSA"
				}
			}
			fc.hdrBuf = m.AppendReceived(fc.hdrBuf[:0], fc.helo, fc.peerIP, fc.cfg.Hostname, fc.localIP, proto, fc.tlsInfo(), now)
			m.PrependRaw(fc.hdrBuf)
		}
		msgs = append(msgs, m)
	}

	switch {
	case fc.cfg.DeferredQueue:
		// deferred_queue: smtp_server_message_received is not called; the
		// messages wait in the internal queue for
		// smtp_server_message_deferred_inject
		for _, m := range msgs {
			m.SetMeta("queue", message.DeferredInjectQueue)
		}
	case s.hasReceived:
		for _, m := range msgs {
			if err := p.MessageReceived(ctx, m, fc.meta); err != nil {
				return fail(err)
			}
		}
	}

	ids := fc.idsBuf[:0] // of the accepted messages, space separated
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
			s.logReception(fc, m, q)
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
		if fc.cfg.TraceHeaders.SupplementalHeader {
			m.PrependHeader(fc.cfg.TraceHeaders.HeaderName, supplemental(m, fc.cfg.TraceHeaders.IncludeMetaNames))
		}
		if err := s.deps.Enqueuer.Spool(ctx, m, fc.cfg.DeferredSpool); err != nil {
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
		s.logReception(fc, m, q)
		if err := s.deps.Enqueuer.Insert(ctx, m); err != nil {
			failed++
			s.deps.Enqueuer.Unspool(ctx, m)
			s.logInternalBounce(fc, m, q, "KumoMTA internal: QueueManager::insert failed during reception: "+err.Error())
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
	fc.idsBuf = ids
	switch {
	case failed == 0:
		fc.setDataReply("OK ids=", ids)
		return nil
	case accepted > 0:
		fc.setDataReply("PARTIAL ids=", ids)
		return nil
	case s.deps.Enqueuer == nil:
		return reply(451, "4.3.0 "+fc.cfg.Hostname+" only queue \"null\" is available: no delivery engine is configured")
	case ctx.Err() != nil:
		return reply(451, "4.4.5 data_processing_timeout exceeded (spool)")
	case policyErr != nil:
		return (&session{fc: fc, s: s}).policyErr(policyErr)
	case spoolErr != nil:
		return reply(421, "4.3.2 "+fc.cfg.Hostname+" the spool is not accepting writes. Try later")
	default:
		return reply(421, textTechnicalDifficulties(fc.cfg.Hostname))
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
