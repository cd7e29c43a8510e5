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
// command. bp holds the body with message.Headroom spare bytes in front;
// receive owns it from here on.
func (s *Server) receive(ctx context.Context, fc *frontConn, from message.Address, rcpts []message.Address, bp *[]byte) error {
	release := func(bps []*[]byte) {
		for _, b := range bps {
			putBuf(b)
		}
	}
	p := s.deps.Policy
	all := append([]message.Address(nil), rcpts...)
	msg := message.NewWithHeadroom(s.deps.IDs, from, all, *bp, message.Headroom)
	msg.CopyConnMeta(fc.meta)
	bufs := []*[]byte{bp}
	ss := &session{fc: fc, s: s}
	fail := func(err error) error {
		release(bufs)
		if errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
			s.log.Warn().Err(err).Str("peer", fc.peer.String()).Msg("data_processing_timeout exceeded")
			return reply(451, "4.4.5 data_processing_timeout exceeded (rx)")
		}
		return ss.policyErr(err)
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
		batches = defaultBatches(msg.Recipients(), s.cfg.BatchHandling)
	}

	msgs := make([]*message.Message, 0, len(batches))
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
			m = message.NewWithHeadroom(s.deps.IDs, msg.Sender(), b, *nb, message.Headroom)
			for k, v := range msg.MetaMap() {
				m.SetMeta(k, v)
			}
		}
		if s.cfg.TraceHeaders.ReceivedHeader {
			first := ""
			if len(b) > 0 {
				first = b[0].String()
			}
			proto := "ESMTP"
			if fc.tls != nil {
				proto = "ESMTPS"
				if fc.authed {
					proto = "ESMTPSA"
				}
			}
			m.PrependHeader("Received", message.ReceivedValue(fc.helo, fc.peerIP, s.cfg.Hostname,
				fc.localIP, proto, fc.tlsInfo(), m.ID(), first, now))
		}
		msgs = append(msgs, m)
	}

	if s.hasReceived {
		for _, m := range msgs {
			if err := p.MessageReceived(ctx, m, fc.meta); err != nil {
				return fail(err)
			}
		}
	}

	var ids strings.Builder
	accepted, failed := 0, 0
	var spoolErr error
	var keep []*[]byte
	for i, m := range msgs {
		q := m.QueueName()
		if q == "null" {
			s.logReception(fc, m, q)
			if len(msgs) > 1 {
				appendID(&ids, m.ID())
			}
			accepted++
			continue
		}
		if s.deps.Enqueuer == nil {
			failed++
			s.log.Warn().Str("queue", q).Str("id", m.ID()).Msg("no queue is configured for non-null queues; message refused")
			continue
		}
		if s.cfg.TraceHeaders.SupplementalHeader {
			m.PrependHeader(s.cfg.TraceHeaders.HeaderName, supplemental(m, s.cfg.TraceHeaders.IncludeMetaNames))
		}
		if err := s.deps.Enqueuer.Spool(ctx, m, s.cfg.DeferredSpool); err != nil {
			failed++
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
		if len(msgs) > 1 {
			appendID(&ids, m.ID())
		}
		accepted++
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
	switch {
	case failed == 0 && len(msgs) == 1:
		return reply(250, "OK ids="+msgs[0].ID())
	case failed == 0:
		return reply(250, "OK ids="+ids.String())
	case accepted > 0:
		return reply(250, "PARTIAL ids="+ids.String())
	case s.deps.Enqueuer == nil:
		return reply(451, "4.3.0 "+s.cfg.Hostname+" only queue \"null\" is available: no delivery engine is configured")
	case ctx.Err() != nil:
		return reply(451, "4.4.5 data_processing_timeout exceeded (spool)")
	case spoolErr != nil:
		return reply(421, "4.3.2 "+s.cfg.Hostname+" the spool is not accepting writes. Try later")
	default:
		return reply(421, "4.3.0 "+s.cfg.Hostname+" technical difficulties")
	}
}

func appendID(sb *strings.Builder, id string) {
	if sb.Len() > 0 {
		sb.WriteByte(' ')
	}
	sb.WriteString(id)
}

func contains(list []*[]byte, b *[]byte) bool {
	for _, x := range list {
		if x == b {
			return true
		}
	}
	return false
}

// defaultBatches splits recipients per batch_handling: one message per
// recipient (BifurcateAlways) or per lower-cased domain (BatchByDomain).
func defaultBatches(rcpts []message.Address, mode string) [][]message.Address {
	if mode != "BatchByDomain" {
		out := make([][]message.Address, len(rcpts))
		for i := range rcpts {
			out[i] = rcpts[i : i+1 : i+1]
		}
		return out
	}
	var out [][]message.Address
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
