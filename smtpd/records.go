package smtpd

import (
	"strings"
	"time"

	"github.com/kumogo/kumogo/internal/logrecord"
	"github.com/kumogo/kumogo/internal/message"
	"github.com/kumogo/kumogo/internal/smtpreply"
)

// logReception writes the Reception record of an accepted message. The
// record and its peer address are the transaction's scratch, reused for every
// message; its id, sender and recipients are left for the encoder to take
// from m, so that logging a message allocates nothing here.
func (s *Server) logReception(c *client, t *txn, m *message.Message, queue string) {
	if s.deps.Logger == nil || !s.deps.Logger.Enabled() {
		return
	}
	t.recPeer = logrecord.PeerAddress{Name: c.helo, Addr: c.peerIP}
	t.rec = logrecord.Record{
		Type:              logrecord.Reception,
		Queue:             queue,
		Size:              int64(m.Size()),
		Response:          smtpreply.Response{Code: 250},
		PeerAddress:       &t.recPeer,
		Timestamp:         time.Now(),
		Created:           m.Created(),
		ReceptionProtocol: "ESMTP",
		NodeID:            s.deps.NodeID,
		SessionID:         c.sessionID,
	}
	if c.tls != nil {
		t.rec.TLSCipher = c.meta.GetString("tls_cipher")
		t.rec.TLSProtocolVersion = c.meta.GetString("tls_protocol_version")
	}
	s.deps.Logger.Log(&t.rec, m)
}

// logRejection writes the Rejection record for a 4xx/5xx reply.
func (ss *session) logRejection(code int, text string) {
	s := ss.s
	if s.deps.Logger == nil || !s.deps.Logger.Enabled() {
		return
	}
	content := strings.ReplaceAll(text, "\n", " ")
	resp := smtpreply.Response{Code: code, Content: content}
	if cl, sub, det, rest, ok := smtpreply.SplitEnhanced(content); ok {
		resp.Enhanced = &smtpreply.EnhancedCode{Class: cl, Subject: sub, Detail: det}
		resp.Content = rest
	}
	if len(ss.cmdLine) > 0 {
		resp.Command = ss.cmdString() + "\r\n"
	}
	rec := &logrecord.Record{
		Type:              logrecord.Rejection,
		ID:                s.deps.IDs.NewString(),
		Sender:            replyAddr(ss.t.mailReply),
		Response:          resp,
		PeerAddress:       &logrecord.PeerAddress{Name: ss.helo, Addr: ss.peerIP},
		Timestamp:         time.Now(),
		ReceptionProtocol: "ESMTP",
		NodeID:            s.deps.NodeID,
		SessionID:         ss.sessionID,
	}
	rec.Created = rec.Timestamp
	if rcpt := replyAddr(ss.t.rcptReply); rcpt != "" {
		rec.Recipient = []string{rcpt}
	}
	s.deps.Logger.Log(rec, nil)
}

// replyAddr returns the address of an "OK <address>" reply text ("" for an
// empty buffer or the null sender).
func replyAddr(okReply []byte) string {
	if len(okReply) <= len("OK ") {
		return ""
	}
	return string(okReply[len("OK "):])
}

// logInternalBounce records the internal Bounce of a message that was
// spooled but could not be queued.
func (s *Server) logInternalBounce(c *client, m *message.Message, queue, text string) {
	if s.deps.Logger == nil || !s.deps.Logger.Enabled() {
		return
	}
	rc := m.Recipients()
	rcpts := make([]string, len(rc))
	for i, r := range rc {
		rcpts[i] = r.String()
	}
	s.deps.Logger.Log(&logrecord.Record{
		Type: logrecord.Bounce, ID: m.ID(), Sender: m.Sender().String(), Recipient: rcpts, Queue: queue,
		Size: int64(m.Size()), Response: smtpreply.Response{Code: 500, Content: text},
		Timestamp: time.Now(), Created: m.Created(), ReceptionProtocol: "ESMTP", NodeID: s.deps.NodeID, SessionID: c.sessionID,
	}, m)
}
