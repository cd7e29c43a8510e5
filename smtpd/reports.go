package smtpd

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/kumogo/kumogo/internal/logrecord"
	"github.com/kumogo/kumogo/internal/mailreport"
	"github.com/kumogo/kumogo/internal/message"
	"github.com/kumogo/kumogo/internal/smtpreply"
)

// Out-of-band bounces and feedback reports sent to listener domains with
// log_oob / log_arf (KumoMTA's make_listener_domain pages of those names):
// an RFC 3464 report gives one OOB record per failed recipient, an RFC
// 5965 report a Feedback record; "LogThenDrop" then discards the message,
// "LogThenRelay" lets it go on. A message whose recipients were accepted
// only for report logging and that is no report is refused.

// reportPlan is what the recipients' listener domains say about a message.
type reportPlan struct {
	relay    bool   // some recipient may be relayed
	oob, arf string // "" or the log_oob / log_arf disposition
}

func logsReports(v string) bool { return v != "" && v != "Ignore" }

// planReports reads the listener domains of the transaction (from the
// session's cache, filled at RCPT).
func (ss *session) planReports() (reportPlan, error) {
	fc, from, rcpts := &ss.client, ss.t.from, ss.t.rcpts
	if !ss.s.hasListenerDomain {
		return reportPlan{relay: true}, nil
	}
	// a relay host may relay anything, and its reports are logged too
	plan := reportPlan{relay: fc.cfg.RelayHosts.Contains(fc.peer.Addr())}
	if !from.IsNull() {
		ld, err := ss.listenerDomain(from.Domain)
		if err != nil {
			return plan, err
		}
		if ld != nil && ld.RelayFrom.Contains(fc.peer.Addr()) {
			plan.relay = true
		}
	}
	for _, r := range rcpts {
		if r.Domain == "" { // <postmaster>
			plan.relay = true
			continue
		}
		ld, err := ss.listenerDomain(r.Domain)
		if err != nil {
			return plan, err
		}
		if ld == nil {
			continue
		}
		plan.relay = plan.relay || ld.RelayTo
		if logsReports(ld.LogOOB) && plan.oob != "LogThenDrop" {
			plan.oob = ld.LogOOB
		}
		if logsReports(ld.LogARF) && plan.arf != "LogThenDrop" {
			plan.arf = ld.LogARF
		}
	}
	return plan, nil
}

// checkReports logs the report that msg carries, if the plan asks for
// it, and reports whether the message is to be dropped. A message that
// is neither a report nor relayable is refused.
func (s *Server) checkReports(ctx context.Context, fc *client, msg *message.Message, plan reportPlan) (bool, error) {
	if plan.oob == "" && plan.arf == "" {
		if !plan.relay {
			return false, relayRefused(fc)
		}
		return false, nil
	}
	isReport, drop := false, false
	if plan.oob != "" {
		dsn, err := mailreport.ParseDSN(msg.Data())
		if err != nil {
			if !plan.relay {
				return false, &smtpreply.Rejection{Code: 550, Text: "5.6.0 " + err.Error(), Mode: smtpreply.If421}
			}
			s.log.Warn().Err(err).Str("peer", fc.peer.String()).Msg("unreadable delivery status report; relaying it as mail")
		}
		if dsn != nil {
			isReport, drop = true, plan.oob == "LogThenDrop"
			s.logOOB(fc, msg, dsn)
		}
	}
	if !isReport && plan.arf != "" {
		arf, err := mailreport.ParseARF(msg.Data())
		if err != nil {
			if !plan.relay {
				return false, &smtpreply.Rejection{Code: 550, Text: "5.6.0 " + err.Error(), Mode: smtpreply.If421}
			}
			s.log.Warn().Err(err).Str("peer", fc.peer.String()).Msg("unreadable feedback report; relaying it as mail")
		}
		if arf != nil {
			isReport, drop = true, plan.arf == "LogThenDrop"
			s.logFeedback(fc, msg, arf)
		}
	}
	if !isReport && !plan.relay {
		return false, relayRefused(fc)
	}
	return drop, nil
}

func relayRefused(fc *client) error {
	return &smtpreply.Rejection{Code: 550, Text: "5.7.1 relaying not permitted for " + fc.peer.String(), Mode: smtpreply.If421}
}

// reportRecord is a record of type t about msg, from this session.
func (s *Server) reportRecord(fc *client, msg *message.Message, t logrecord.Type) logrecord.Record {
	rc := msg.Recipients()
	rcpts := make([]string, len(rc))
	for i, r := range rc {
		rcpts[i] = r.String()
	}
	return logrecord.Record{
		Type: t, ID: msg.ID(), Sender: msg.Sender().String(), Recipient: rcpts, Size: int64(msg.Size()),
		Response:    smtpreply.Response{Code: 250},
		PeerAddress: &logrecord.PeerAddress{Name: fc.helo, Addr: fc.peerIP},
		Timestamp:   time.Now(), Created: msg.Created(), ReceptionProtocol: "ESMTP",
		NodeID: s.deps.NodeID, SessionID: fc.sessionID,
	}
}

// logOOB writes one OOB record per failed recipient of the report: the
// response is the diagnostic (its code, 550 when it has none) with the
// report's status, which the bounce classifier, when configured, sorts
// into bounce_classification (multiLogger in cmd/kumogo).
func (s *Server) logOOB(fc *client, msg *message.Message, dsn *mailreport.DSN) {
	if s.deps.Logger == nil || !s.deps.Logger.Enabled() {
		return
	}
	for _, pr := range dsn.PerRecipient {
		if pr.Action != "failed" {
			continue
		}
		rec := s.reportRecord(fc, msg, logrecord.OOB)
		// as KumoMTA's OOB record: the original recipient when the report
		// names one, the reporting MTA as the peer's name, and the time of
		// the last attempt
		rcpt := pr.FinalRecipient.Recipient
		if pr.OriginalRecipient != nil && pr.OriginalRecipient.Recipient != "" {
			rcpt = pr.OriginalRecipient.Recipient
		}
		rec.Recipient = []string{rcpt}
		rec.PeerAddress = &logrecord.PeerAddress{Name: dsn.PerMessage.ReportingMTA.Name, Addr: fc.peerIP}
		if t, err := time.Parse(time.RFC3339, pr.LastAttemptDate); err == nil {
			rec.Timestamp = t
		}
		code, content := 550, pr.Status.Comment
		if pr.DiagnosticCode != nil {
			content = pr.DiagnosticCode.Diagnostic
			if c, rest, ok := strings.Cut(content, " "); ok {
				if n, err := strconv.Atoi(c); err == nil && n >= 200 && n <= 599 {
					code, content = n, rest
				}
			}
			if _, _, _, rest, ok := smtpreply.SplitEnhanced(content); ok {
				content = rest
			}
		}
		rec.Response = smtpreply.Response{Code: code, Content: content,
			Enhanced: &smtpreply.EnhancedCode{Class: pr.Status.Class, Subject: pr.Status.Subject, Detail: pr.Status.Detail}}
		s.deps.Logger.Log(&rec, msg)
	}
}

// logFeedback writes the Feedback record of an ARF report.
func (s *Server) logFeedback(fc *client, msg *message.Message, arf *mailreport.ARF) {
	if s.deps.Logger == nil || !s.deps.Logger.Enabled() {
		return
	}
	raw, err := json.Marshal(arf)
	if err != nil {
		return
	}
	rec := s.reportRecord(fc, msg, logrecord.Feedback)
	rec.FeedbackReport = raw
	s.deps.Logger.Log(&rec, msg)
}
