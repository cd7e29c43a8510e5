package egress

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/kumogo/kumogo/internal/logrecord"
	"github.com/kumogo/kumogo/internal/smtpreply"
	"github.com/kumogo/kumogo/queue/egress/mx"
)

// Response is one SMTP response as log records carry it: the code, the
// enhanced status code when the peer gave one (stripped from Content),
// the text (lines joined by "\n") and the command it answered, as written
// on the wire including CRLF ("" for the banner and synthetic responses
// that answer no command).
type Response struct {
	Code     int
	Enhanced *logrecord.EnhancedCode
	Content  string
	Command  string
}

// String renders the response on one line: "<code> <x.y.z> <content>" with
// the content's line breaks replaced by spaces.
func (r Response) String() string {
	var b strings.Builder
	b.WriteString(strconv.Itoa(r.Code))
	if r.Enhanced != nil {
		fmt.Fprintf(&b, " %d.%d.%d", r.Enhanced.Class, r.Enhanced.Subject, r.Enhanced.Detail)
	}
	if r.Content != "" {
		b.WriteByte(' ')
		b.WriteString(strings.ReplaceAll(r.Content, "\n", " "))
	}
	return b.String()
}

// Outcome classifies a response for log records and the retry logic.
type Outcome int

const (
	// Delivery: the peer accepted (2xx).
	Delivery Outcome = iota
	// TransientFailure: try again later (4xx, 3xx, 503, "too many
	// recipients", anything unexpected).
	TransientFailure
	// Bounce: permanent failure (other 5xx).
	Bounce
)

// String returns the log record type name.
func (o Outcome) String() string {
	switch o {
	case Delivery:
		return "Delivery"
	case Bounce:
		return "Bounce"
	}
	return "TransientFailure"
}

// Classify maps a response code and text to its outcome as KumoMTA does
// (reference §5.5): 2xx Delivery; 4xx, 3xx, 503 (a protocol
// synchronisation problem rather than a verdict on the message) and any
// response mentioning "too many recipients" TransientFailure; other 5xx
// Bounce.
func Classify(code int, content string) Outcome {
	switch {
	case code >= 200 && code < 300:
		return Delivery
	case code == 503:
		return TransientFailure
	case containsFold(content, "too many recipients"):
		return TransientFailure
	case code >= 500 && code < 600:
		return Bounce
	}
	return TransientFailure
}

// Outcome is Classify(r.Code, r.Content).
func (r Response) Outcome() Outcome { return Classify(r.Code, r.Content) }

func containsFold(s, sub string) bool {
	if len(s) < len(sub) {
		return false
	}
	for i := 0; i+len(sub) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(sub)], sub) {
			return true
		}
	}
	return false
}

// Error is a failure that carries the response to record for the
// recipients it affects: a connection that could not be set up (refused
// connect, bad banner, EHLO rejected, TLS required but not offered, AUTH
// refused) or a routing failure.
type Error struct {
	Response Response
	Err      error // underlying cause, may be nil
}

func (e *Error) Error() string {
	if e.Err != nil && e.Response.Code == 0 {
		return e.Err.Error()
	}
	return e.Response.String()
}

func (e *Error) Unwrap() error { return e.Err }

// ResponseFor returns the response to record for an error from Plan,
// FilterHosts, Dial or Connect: the carried response of an *Error or an
// *mx.Failure, or a synthetic "400 KumoMTA internal: failed to connect to
// any candidate hosts: <err>" (TransientFailure) for anything else (DNS
// failures, NXDOMAIN).
func ResponseFor(err error) Response {
	var e *Error
	if errors.As(err, &e) {
		return e.Response
	}
	var f *mx.Failure
	if errors.As(err, &f) {
		return failureResponse(f)
	}
	return Response{Code: 400, Content: "KumoMTA internal: failed to connect to any candidate hosts: " + err.Error()}
}

func failureResponse(f *mx.Failure) Response {
	r := Response{Code: f.Code, Content: f.Text}
	if enh, rest, ok := splitEnhanced(f.Text, f.Code); ok {
		r.Enhanced, r.Content = enh, rest
	}
	return r
}

// splitEnhanced splits a leading "x.y.z " enhanced status code from
// text; the class must agree with code's first digit.
func splitEnhanced(text string, code int) (*logrecord.EnhancedCode, string, bool) {
	class, subject, detail, rest, ok := smtpreply.SplitEnhanced(text)
	if !ok || class != code/100 {
		return nil, text, false
	}
	return &logrecord.EnhancedCode{Class: class, Subject: subject, Detail: detail}, rest, true
}

// Internal response texts (reference §5.5).
const (
	text8BitData     = "KumoMTA internal: DATA is 8bit, destination does not support 8BITMIME. Conversion via msg:check_fix_conformance during reception is required"
	text8BitEnvelope = "KumoMTA internal: envelope is 8bit, destination does not support SMTPUTF8."
	textSendFailed   = "KumoMTA internal: failed to send message: "
)

func enh(class, subject, detail int) *logrecord.EnhancedCode {
	return &logrecord.EnhancedCode{Class: class, Subject: subject, Detail: detail}
}
