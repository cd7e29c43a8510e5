// Package smtpd is kumogo's inbound ESMTP listener. It is built on
// github.com/emersion/go-smtp: go-smtp parses MAIL, RCPT, DATA and BDAT and
// drives a Session, while a thin front end wrapped around each connection
// (front.go) frames the byte stream, answers the commands that go-smtp does
// not know or answers differently (banner, EHLO, NOOP, STARTTLS, AUTH, limits,
// invalid UTF-8, long lines), rewrites go-smtp's reply texts into KumoMTA's,
// and coalesces pipelined replies into one write. The session (session.go)
// calls the policy's SMTP events in KumoMTA's order, applies relay control and
// limits, adds trace headers and hands accepted messages on.
//
// smtpd depends on the policy only through the Policy interface, on the queue
// only through Enqueuer and on logging only through RecordLogger; the daemon
// wires concrete implementations in.
package smtpd
