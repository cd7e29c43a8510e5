package egress

import (
	"errors"

	"github.com/kumogo/kumogo/internal/smtpreply"
	"github.com/kumogo/kumogo/queue/egress/mx"
)

// ResponseFor returns the response to record for an error from Plan,
// FilterHosts, Dial or Connect: the carried response of a
// *smtpreply.Error or an *mx.Failure, or a synthetic "400 KumoMTA
// internal: failed to connect to any candidate hosts: <err>"
// (TransientFailure) for anything else (DNS failures, NXDOMAIN).
func ResponseFor(err error) smtpreply.Response {
	var e *smtpreply.Error
	if errors.As(err, &e) {
		return e.Response
	}
	var f *mx.Failure
	if errors.As(err, &f) {
		return smtpreply.Parse(f.Code, f.Text)
	}
	return smtpreply.Response{Code: 400, Content: textConnectFailed + err.Error()}
}

// Internal response texts (KumoMTA docs: "Delivery" log records; the
// texts are KumoMTA's, see queue/egress/doc.go).
const (
	text8BitData      = "KumoMTA internal: DATA is 8bit, destination does not support 8BITMIME. Conversion via msg:check_fix_conformance during reception is required"
	text8BitEnvelope  = "KumoMTA internal: envelope is 8bit, destination does not support SMTPUTF8."
	textSendFailed    = "KumoMTA internal: failed to send message: "
	textConnectFailed = "KumoMTA internal: failed to connect to any candidate hosts: "
)

func enh(class, subject, detail int) *smtpreply.EnhancedCode {
	return &smtpreply.EnhancedCode{Class: class, Subject: subject, Detail: detail}
}
