package smtpreply

import (
	"strconv"
	"strings"
)

// EnhancedCode is an RFC 3463 enhanced status code (class.subject.detail).
type EnhancedCode struct {
	Class   int `json:"class"`
	Subject int `json:"subject"`
	Detail  int `json:"detail"`
}

// Response is one SMTP response: the code, the enhanced status code when
// one was given (then stripped from Content), the text (lines joined by
// "\n") and the command it answered as written on the wire, CRLF included
// ("" for a banner and for the synthetic responses that answer no
// command). Its JSON form is the `response` object of KumoMTA's log
// records; Enhanced nil and Command "" encode as null there.
type Response struct {
	Code     int           `json:"code"`
	Enhanced *EnhancedCode `json:"enhanced_code"`
	Content  string        `json:"content"`
	Command  string        `json:"command"`
}

// Parse builds the Response for code and text, splitting a leading
// enhanced status code from text when its class agrees with the code's
// first digit.
func Parse(code int, text string) Response {
	r := Response{Code: code, Content: text}
	if e, rest, ok := CutEnhanced(code, text); ok {
		r.Enhanced, r.Content = e, rest
	}
	return r
}

// CutEnhanced splits a leading "x.y.z " enhanced status code from text
// when its class agrees with code's first digit.
func CutEnhanced(code int, text string) (*EnhancedCode, string, bool) {
	class, subject, detail, rest, ok := SplitEnhanced(text)
	if !ok || class != code/100 {
		return nil, text, false
	}
	return &EnhancedCode{Class: class, Subject: subject, Detail: detail}, rest, true
}

// String renders the response on one line as KumoMTA hands it to policy
// events and the bounce classifier: "<code> <x.y.z> <content>", the
// enhanced code only when present, line breaks in the content replaced by
// spaces.
func (r Response) String() string {
	var b strings.Builder
	b.WriteString(strconv.Itoa(r.Code))
	b.WriteByte(' ')
	if e := r.Enhanced; e != nil {
		b.WriteString(strconv.Itoa(e.Class))
		b.WriteByte('.')
		b.WriteString(strconv.Itoa(e.Subject))
		b.WriteByte('.')
		b.WriteString(strconv.Itoa(e.Detail))
		b.WriteByte(' ')
	}
	b.WriteString(strings.ReplaceAll(r.Content, "\n", " "))
	return b.String()
}

// Equal reports whether r and o are the same response (the enhanced codes
// compared by value).
func (r Response) Equal(o Response) bool {
	if r.Code != o.Code || r.Content != o.Content || r.Command != o.Command {
		return false
	}
	if r.Enhanced == nil || o.Enhanced == nil {
		return r.Enhanced == o.Enhanced
	}
	return *r.Enhanced == *o.Enhanced
}

// Outcome is the classification of a delivery response.
type Outcome int

const (
	// Delivery: the peer accepted the message (2xx).
	Delivery Outcome = iota
	// TransientFailure: try again later (4xx, 3xx, 503, "too many
	// recipients", anything unexpected).
	TransientFailure
	// Bounce: permanent failure (other 5xx).
	Bounce
)

// String returns the log record type of the outcome.
func (o Outcome) String() string {
	switch o {
	case Delivery:
		return "Delivery"
	case Bounce:
		return "Bounce"
	}
	return "TransientFailure"
}

// Classify maps a response code and text to its outcome as KumoMTA's
// dispatcher does (KumoMTA docs: "Delivery" log records, and
// queue/egress/doc.go): 2xx Delivery; 4xx, 3xx, 503 (a protocol
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
	for i := 0; i+len(sub) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(sub)], sub) {
			return true
		}
	}
	return false
}

// Error is a failure that carries the response to record for the
// recipients it affects: a connection that could not be set up, a routing
// failure (null MX, no usable address) and the like.
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
