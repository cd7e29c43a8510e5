package mailreport

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"mime/quotedprintable"
	"net/mail"
	"strconv"
	"strings"
)

// ARF is a parsed RFC 5965 feedback report, with the fields of KumoMTA's
// Feedback record (feedback_report).
type ARF struct {
	FeedbackType          string              `json:"feedback_type"`
	UserAgent             string              `json:"user_agent"`
	Version               string              `json:"version"`
	ArrivalDate           string              `json:"arrival_date,omitempty"`
	Incidents             *int                `json:"incidents,omitempty"`
	OriginalEnvelopeID    string              `json:"original_envelope_id,omitempty"`
	OriginalMailFrom      string              `json:"original_mail_from,omitempty"`
	ReportingMTA          *RemoteMTA          `json:"reporting_mta,omitempty"`
	SourceIP              string              `json:"source_ip,omitempty"`
	AuthenticationResults []string            `json:"authentication_results"`
	OriginalRcptTo        []string            `json:"original_rcpto_to"`
	ReportedDomain        []string            `json:"reported_domain"`
	ReportedURI           []string            `json:"reported_uri"`
	Extensions            map[string][]string `json:"extensions"`
	OriginalMessage       string              `json:"original_message,omitempty"`
	SupplementalTrace     any                 `json:"supplemental_trace"`
}

// known ARF fields (the rest are extensions)
var arfFields = map[string]bool{
	"Feedback-Type": true, "User-Agent": true, "Version": true, "Arrival-Date": true, "Incidents": true,
	"Original-Envelope-Id": true, "Original-Mail-From": true, "Reporting-Mta": true, "Source-Ip": true,
	"Authentication-Results": true, "Original-Rcpt-To": true, "Reported-Domain": true, "Reported-Uri": true,
}

// TraceHeader is the header kumogo (like KumoMTA) stamps on outgoing mail
// whose JSON comes back as supplemental_trace in a feedback report.
const TraceHeader = "X-KumoRef"

// ParseARF reads an RFC 5965 report. It returns nil and no error when
// data is not a feedback report, and an error wrapping ErrMalformed when
// it is one that cannot be read.
func ParseARF(data []byte) (*ARF, error) {
	parts, err := reportParts(data, "feedback-report")
	if parts == nil || err != nil {
		return nil, err
	}
	var fb, orig *part
	for i := range parts {
		switch parts[i].ct {
		case "message/feedback-report":
			if fb == nil {
				fb = &parts[i]
			}
		case "message/rfc822", "text/rfc822-headers", "message/global", "message/global-headers":
			if orig == nil {
				orig = &parts[i]
			}
		}
	}
	if fb == nil {
		return nil, malformed("no message/feedback-report part")
	}
	groups, err := fieldGroups(fb.body)
	if err != nil {
		return nil, err
	}
	if len(groups) == 0 {
		return nil, malformed("empty message/feedback-report part")
	}
	h := groups[0]
	rep := &ARF{
		FeedbackType:          strings.ToLower(strings.TrimSpace(h.Get("Feedback-Type"))),
		UserAgent:             h.Get("User-Agent"),
		Version:               h.Get("Version"),
		ArrivalDate:           rfc3339(h.Get("Arrival-Date")),
		OriginalEnvelopeID:    h.Get("Original-Envelope-Id"),
		OriginalMailFrom:      h.Get("Original-Mail-From"),
		SourceIP:              h.Get("Source-Ip"),
		AuthenticationResults: nonNil(h.Values("Authentication-Results")),
		OriginalRcptTo:        nonNil(h.Values("Original-Rcpt-To")),
		ReportedDomain:        nonNil(h.Values("Reported-Domain")),
		ReportedURI:           nonNil(h.Values("Reported-Uri")),
		Extensions:            map[string][]string{},
	}
	if rep.FeedbackType == "" || rep.UserAgent == "" || rep.Version == "" {
		return nil, malformed("feedback report lacks Feedback-Type, User-Agent or Version")
	}
	if n, err := strconv.Atoi(strings.TrimSpace(h.Get("Incidents"))); err == nil {
		rep.Incidents = &n
	}
	rep.ReportingMTA = remoteMTA(h.Get("Reporting-Mta"))
	for k, v := range h {
		if !arfFields[k] {
			rep.Extensions[strings.ToLower(k)] = v
		}
	}
	if orig != nil {
		rep.OriginalMessage = string(orig.body)
		rep.SupplementalTrace = supplementalTrace(orig.body)
	}
	return rep, nil
}

func nonNil(v []string) []string {
	if v == nil {
		return []string{}
	}
	return v
}

// supplementalTrace decodes the trace header of the original message:
// base64 of JSON, folded.
func supplementalTrace(orig []byte) any {
	msg, err := mail.ReadMessage(bytes.NewReader(append(append([]byte(nil), orig...), "\r\n\r\n"...)))
	if err != nil {
		return nil
	}
	v := strings.Join(strings.Fields(msg.Header.Get(TraceHeader)), "")
	if v == "" {
		return nil
	}
	raw, err := base64.StdEncoding.DecodeString(v)
	if err != nil {
		return nil
	}
	var out any
	if json.Unmarshal(raw, &out) != nil {
		return nil
	}
	if m, ok := out.(map[string]any); ok {
		delete(m, "_@_") // the marker of the header, not trace data
	}
	return out
}

func decodeBody(enc string, body []byte) ([]byte, error) {
	if enc == "base64" {
		return io.ReadAll(base64.NewDecoder(base64.StdEncoding, bytes.NewReader(bytes.Join(bytes.Fields(body), nil))))
	}
	return io.ReadAll(quotedprintable.NewReader(bytes.NewReader(body)))
}
