// Package mailreport reads and writes the reports mail systems send each
// other: delivery status notifications (RFC 3464, multipart/report with
// report-type=delivery-status) and abuse feedback reports (ARF, RFC
// 5965, report-type=feedback-report). The shapes follow KumoMTA's
// message:parse_rfc3464 page and its Feedback log record; generation
// follows its kumo.generate_rfc3464_message page.
package mailreport

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"net/textproto"
	"strconv"
	"strings"
	"time"
)

// maxReportSize bounds how much of a report part is read.
const maxReportSize = 1 << 20

// RemoteMTA is an "mta-type; name" field (Reporting-MTA, Remote-MTA).
type RemoteMTA struct {
	MTAType string `json:"mta_type"`
	Name    string `json:"name"`
}

// Recipient is an "address-type; address" field.
type Recipient struct {
	RecipientType string `json:"recipient_type"`
	Recipient     string `json:"recipient"`
}

// Status is an enhanced status code with its optional comment.
type Status struct {
	Class   int    `json:"class"`
	Subject int    `json:"subject"`
	Detail  int    `json:"detail"`
	Comment string `json:"comment,omitempty"`
}

// DiagnosticCode is a "diagnostic-type; diagnostic" field.
type DiagnosticCode struct {
	DiagnosticType string `json:"diagnostic_type"`
	Diagnostic     string `json:"diagnostic"`
}

// PerMessage is the per-message part of a delivery status report.
type PerMessage struct {
	OriginalEnvelopeID string     `json:"original_envelope_id,omitempty"`
	ReportingMTA       RemoteMTA  `json:"reporting_mta"`
	DSNGateway         *RemoteMTA `json:"dsn_gateway,omitempty"`
	ReceivedFromMTA    *RemoteMTA `json:"received_from_mta,omitempty"`
	ArrivalDate        string     `json:"arrival_date,omitempty"` // RFC 3339
}

// PerRecipient is one recipient's part of a delivery status report.
type PerRecipient struct {
	FinalRecipient    Recipient       `json:"final_recipient"`
	Action            string          `json:"action"`
	Status            Status          `json:"status"`
	OriginalRecipient *Recipient      `json:"original_recipient,omitempty"`
	RemoteMTA         *RemoteMTA      `json:"remote_mta,omitempty"`
	DiagnosticCode    *DiagnosticCode `json:"diagnostic_code,omitempty"`
	LastAttemptDate   string          `json:"last_attempt_date,omitempty"`
	FinalLogID        string          `json:"final_log_id,omitempty"`
	WillRetryUntil    string          `json:"will_retry_until,omitempty"`
}

// DSN is a parsed RFC 3464 report.
type DSN struct {
	PerMessage      PerMessage     `json:"per_message"`
	PerRecipient    []PerRecipient `json:"per_recipient"`
	OriginalMessage string         `json:"original_message,omitempty"`
}

// ErrMalformed is wrapped by the errors of reports that announce
// themselves (multipart/report of the right type) but cannot be read.
var ErrMalformed = errors.New("malformed report")

func malformed(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, a...))
}

// reportParts returns the parts of data when it is a multipart/report of
// reportType, or nil when it is something else.
func reportParts(data []byte, reportType string) ([]part, error) {
	msg, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		return nil, nil // not a message we can read: not a report
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" || !strings.EqualFold(params["report-type"], reportType) {
		return nil, nil
	}
	if params["boundary"] == "" {
		return nil, malformed("multipart/report without a boundary")
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	var parts []part
	for len(parts) < 16 {
		p, err := mr.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, malformed("%v", err)
		}
		body, err := io.ReadAll(io.LimitReader(p, maxReportSize))
		if err != nil {
			return nil, malformed("%v", err)
		}
		ct, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
		if ct == "" {
			ct = "text/plain"
		}
		if enc := strings.ToLower(strings.TrimSpace(p.Header.Get("Content-Transfer-Encoding"))); enc == "quoted-printable" || enc == "base64" {
			if body, err = decodeBody(enc, body); err != nil {
				return nil, malformed("%s part: %v", ct, err)
			}
		}
		parts = append(parts, part{ct: ct, body: body})
	}
	return parts, nil
}

type part struct {
	ct   string
	body []byte
}

// fieldGroups reads blocks of header fields separated by blank lines.
func fieldGroups(body []byte) ([]textproto.MIMEHeader, error) {
	var out []textproto.MIMEHeader
	text := strings.ReplaceAll(string(body), "\r\n", "\n")
	for _, block := range strings.Split(text, "\n\n") {
		if strings.TrimSpace(block) == "" {
			continue
		}
		r := textproto.NewReader(bufio.NewReader(strings.NewReader(strings.TrimLeft(block, "\n") + "\n\n")))
		h, err := r.ReadMIMEHeader()
		if err != nil && len(h) == 0 {
			return nil, malformed("status fields: %v", err)
		}
		out = append(out, h)
	}
	return out, nil
}

// typed reads "type; value".
func typed(s string) (string, string, bool) {
	t, v, ok := strings.Cut(s, ";")
	if !ok {
		return "", "", false
	}
	return strings.ToLower(strings.TrimSpace(t)), strings.TrimSpace(v), true
}

func remoteMTA(s string) *RemoteMTA {
	t, v, ok := typed(s)
	if !ok {
		return nil
	}
	return &RemoteMTA{MTAType: t, Name: v}
}

// ParseStatus reads "5.7.1", with an optional comment after it (bare or
// in parentheses).
func ParseStatus(s string) (Status, error) {
	s = strings.TrimSpace(s)
	code, comment, _ := strings.Cut(s, " ")
	nums := strings.Split(code, ".")
	if len(nums) != 3 {
		return Status{}, malformed("status %q", s)
	}
	var v [3]int
	for i, n := range nums {
		x, err := strconv.Atoi(n)
		if err != nil || x < 0 || x > 999 {
			return Status{}, malformed("status %q", s)
		}
		v[i] = x
	}
	if v[0] != 2 && v[0] != 4 && v[0] != 5 {
		return Status{}, malformed("status class of %q", s)
	}
	comment = strings.TrimSpace(comment)
	if strings.HasPrefix(comment, "(") && strings.HasSuffix(comment, ")") {
		comment = comment[1 : len(comment)-1]
	}
	return Status{Class: v[0], Subject: v[1], Detail: v[2], Comment: comment}, nil
}

// rfc3339 converts an RFC 5322 date to RFC 3339 UTC ("" when unreadable).
func rfc3339(s string) string {
	if s == "" {
		return ""
	}
	t, err := mail.ParseDate(s)
	if err != nil {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

var actions = map[string]bool{"failed": true, "delayed": true, "delivered": true, "relayed": true, "expanded": true}

// ParseDSN reads an RFC 3464 report. It returns nil and no error when
// data is not a delivery-status report, and an error wrapping
// ErrMalformed when it is one that cannot be read.
func ParseDSN(data []byte) (*DSN, error) {
	parts, err := reportParts(data, "delivery-status")
	if parts == nil || err != nil {
		return nil, err
	}
	var status *part
	var orig *part
	for i := range parts {
		switch parts[i].ct {
		case "message/delivery-status", "message/global-delivery-status":
			if status == nil {
				status = &parts[i]
			}
		case "message/rfc822", "text/rfc822-headers", "message/global", "message/global-headers":
			if orig == nil {
				orig = &parts[i]
			}
		}
	}
	if status == nil {
		return nil, malformed("no message/delivery-status part")
	}
	groups, err := fieldGroups(status.body)
	if err != nil {
		return nil, err
	}
	if len(groups) < 2 {
		return nil, malformed("delivery-status has no per-recipient fields")
	}
	pm := groups[0]
	rep := &DSN{PerMessage: PerMessage{
		OriginalEnvelopeID: pm.Get("Original-Envelope-Id"),
		ArrivalDate:        rfc3339(pm.Get("Arrival-Date")),
	}}
	mta := remoteMTA(pm.Get("Reporting-MTA"))
	if mta == nil {
		return nil, malformed("missing or bad Reporting-MTA")
	}
	rep.PerMessage.ReportingMTA = *mta
	rep.PerMessage.DSNGateway = remoteMTA(pm.Get("DSN-Gateway"))
	rep.PerMessage.ReceivedFromMTA = remoteMTA(pm.Get("Received-From-MTA"))
	for _, g := range groups[1:] {
		t, v, ok := typed(g.Get("Final-Recipient"))
		if !ok {
			return nil, malformed("missing or bad Final-Recipient")
		}
		pr := PerRecipient{FinalRecipient: Recipient{RecipientType: t, Recipient: v}}
		pr.Action = strings.ToLower(strings.TrimSpace(g.Get("Action")))
		if !actions[pr.Action] {
			return nil, malformed("bad Action %q", g.Get("Action"))
		}
		if pr.Status, err = ParseStatus(g.Get("Status")); err != nil {
			return nil, err
		}
		if t, v, ok := typed(g.Get("Original-Recipient")); ok {
			pr.OriginalRecipient = &Recipient{RecipientType: t, Recipient: v}
		}
		pr.RemoteMTA = remoteMTA(g.Get("Remote-MTA"))
		if t, v, ok := typed(g.Get("Diagnostic-Code")); ok {
			pr.DiagnosticCode = &DiagnosticCode{DiagnosticType: t, Diagnostic: v}
		}
		pr.LastAttemptDate = rfc3339(g.Get("Last-Attempt-Date"))
		pr.WillRetryUntil = rfc3339(g.Get("Will-Retry-Until"))
		pr.FinalLogID = g.Get("Final-Log-Id")
		rep.PerRecipient = append(rep.PerRecipient, pr)
	}
	if orig != nil {
		rep.OriginalMessage = string(orig.body)
	}
	return rep, nil
}
