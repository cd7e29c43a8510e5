// Package smtpreply is kumogo's one model of an SMTP response: Response
// (code, enhanced code, text, the command it answered) with its
// classification into Delivery, TransientFailure and Bounce, used by the
// queue, the egress client and log records; and Rejection, the reply that
// policy code raises (kumo.reject / kumo.disconnect) and that the listener
// writes on the wire. It depends on the standard library only.
package smtpreply

import (
	"strconv"
	"strings"
)

// DisconnectMode says whether the connection is closed after a rejection.
type DisconnectMode int

const (
	// If421 closes the connection only when the code is 421 (kumo.reject).
	If421 DisconnectMode = iota
	// ForceDisconnect always closes after the response.
	ForceDisconnect
	// FollowWith421 sends the response, then 421 "disconnecting due to
	// previous error", then closes.
	FollowWith421
)

// Rejection is an SMTP response chosen by policy. Text may hold several
// lines separated by "\n" and may begin with an enhanced status code.
type Rejection struct {
	Code int
	Text string
	Mode DisconnectMode
}

// Error renders "<code> <text>".
func (r *Rejection) Error() string { return strconv.Itoa(r.Code) + " " + r.Text }

// Closes reports whether the connection must be closed after this response.
func (r *Rejection) Closes() bool {
	return r.Mode == ForceDisconnect || r.Mode == FollowWith421 || r.Code == 421
}

// Format renders the response as wire lines ending in CRLF, one
// "code-text" continuation line per "\n" in Text.
func Format(code int, text string) string {
	var sb strings.Builder
	lines := strings.Split(strings.TrimRight(text, "\r\n"), "\n")
	c := strconv.Itoa(code)
	for i, l := range lines {
		sb.WriteString(c)
		if i < len(lines)-1 {
			sb.WriteByte('-')
		} else {
			sb.WriteByte(' ')
		}
		sb.WriteString(strings.TrimRight(l, "\r"))
		sb.WriteString("\r\n")
	}
	return sb.String()
}

// SplitEnhanced splits a leading "x.y.z " enhanced status code (RFC 3463:
// a one-digit class of 2 to 5, then up to three digits twice) from text.
// ok is false when text does not start with one.
func SplitEnhanced(text string) (class, subject, detail int, rest string, ok bool) {
	sp := strings.IndexByte(text, ' ')
	head := text
	if sp >= 0 {
		head, rest = text[:sp], text[sp+1:]
	}
	parts := strings.Split(head, ".")
	if len(parts) != 3 {
		return 0, 0, 0, text, false
	}
	var n [3]int
	for i, p := range parts {
		if p == "" || len(p) > 3 || i == 0 && len(p) != 1 {
			return 0, 0, 0, text, false
		}
		for j := 0; j < len(p); j++ {
			// digits only: strconv would take a sign ("2.0.-1")
			if p[j] < '0' || p[j] > '9' {
				return 0, 0, 0, text, false
			}
			n[i] = n[i]*10 + int(p[j]-'0')
		}
	}
	if n[0] < 2 || n[0] > 5 {
		return 0, 0, 0, text, false
	}
	return n[0], n[1], n[2], rest, true
}
