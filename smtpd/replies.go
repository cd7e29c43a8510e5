package smtpd

import smtp "github.com/emersion/go-smtp"

// Replies used in more than one place (KumoMTA's texts where KumoMTA has
// one), as go-smtp names its own (smtp.ErrAuthFailed, ...). Our texts carry
// their enhanced code, so the values have none of their own. Those that
// name the host are functions of it.
var (
	replyBadRecipient = rep(501, "5.1.3 Invalid recipient address syntax")
	replyTooBig       = rep(552, "5.3.4 message too big")
	replyLineTooLong  = rep(500, "5.2.3 line too long")
	// replyContinue answers a BDAT chunk that is not the last (go-smtp's
	// text; KumoMTA has no BDAT).
	replyContinue = rep(250, "2.0.0 Continue")
)

func replyBadSender(path string) *smtp.SMTPError {
	return rep(501, "5.1.7 Invalid sender address syntax: "+path)
}

// rep is a reply as the Session methods return it to go-smtp.
func rep(code int, text string) *smtp.SMTPError {
	return &smtp.SMTPError{Code: code, EnhancedCode: smtp.NoEnhancedCode, Message: text}
}

// refuse decides reply e to the command being answered and returns it
// to go-smtp.
func (ss *session) refuse(e *smtp.SMTPError) error {
	ss.decide(decision{code: e.Code, text: e.Message})
	return e
}

// refusePolicy is refuse for a policy event's error (policyReply).
func (ss *session) refusePolicy(err error) error {
	d := ss.policyReply(err)
	ss.decide(d)
	return rep(d.code, d.text)
}

// Texts used in more than one place.
const (
	textEhloFirst     = "5.5.1 EHLO or HELO must be issued first"
	textRcptFirst     = "5.5.0 RCPT TO must be issued first"
	textUnimplemented = "5.5.1 Command unimplemented"
)

func textShuttingDown(host string) string { return "4.3.2 " + host + " shutting down" }

func textIdleTooLong(host string) string { return "4.3.2 " + host + " idle too long" }

func textTechnicalDifficulties(host string) string {
	return "4.3.0 " + host + " technical difficulties"
}

func textTooManySessions(host string) string {
	return "4.3.2 " + host + " too many concurrent sessions. Try later"
}

// textLoadShedding answers new sessions while the process is over its
// memory limit (KumoMTA's load shedding).
func textLoadShedding(host string) string { return "4.3.2 " + host + " load shedding. Try later" }

// textDiskFull answers new sessions while the spool does not take writes.
func textDiskFull(host string) string { return "4.3.2 " + host + " disk is too full. Try later" }
