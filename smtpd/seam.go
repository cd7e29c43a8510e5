package smtpd

// The seam between go-smtp and the session: go-smtp writes its replies to
// the session (its net.Conn), and they are replaced here by the replies the
// session decided. go-smtp's texts are never read.
//
// go-smtp (conn.go of github.com/emersion/go-smtp) answers every command it
// is given with texts of its own: "Roger, accepting mail from", "Session
// reset", "Go ahead", "OK: queued" and so on, none of them KumoMTA's, and it
// has no option to change them. So the session decides the reply to every
// command it forwards: the command loop (commands.go) before forwarding
// EHLO, HELO, RSET and QUIT, which go-smtp cannot refuse once the loop has
// checked them, and the Session methods (transaction.go, data.go) for
// MAIL, RCPT and DATA/BDAT. When go-smtp writes a reply, the seam sends
// the decided one in its place. Only what go-smtp refuses by itself,
// without calling the session (an ESMTP parameter it does not take, a
// panic), is passed on as go-smtp wrote it; a 421 among those becomes
// KumoMTA's technical-difficulties reply.
//
// The only structure read from go-smtp's output is that of RFC 5321: where
// a reply ends and its code.

import (
	"bytes"

	"github.com/kumogo/kumogo/internal/smtpreply"
)

// decision is the reply the session chose for the command being answered.
type decision struct {
	set   bool
	code  int
	text  string
	textB []byte // a one-line text held in a session buffer (no allocation)
	mode  smtpreply.DisconnectMode
	quit  bool // the session ends after the reply (QUIT)
}

// heldReply is go-smtp's go-ahead for DATA, kept until Data (which go-smtp
// calls only after it) sends the session's own 354 instead.
type heldReply struct {
	set  bool
	code int
	text []byte
}

// decide sets the reply to the command being answered.
func (ss *session) decide(d decision) {
	d.set = true
	ss.decided = d
}

// Write receives go-smtp's replies; each complete one goes to goReply.
func (ss *session) Write(p []byte) (int, error) {
	if ss.closed {
		return len(p), nil
	}
	ss.partial = append(ss.partial, p...)
	done := 0
	for {
		end, code, text, ok := parseReply(ss.partial[done:], &ss.joined)
		if !ok {
			break
		}
		done += end
		ss.goReply(code, text)
	}
	// Keep the unparsed rest at the start of the same array: re-slicing
	// past the parsed replies would shrink the capacity at every reply
	// and make the next append allocate.
	ss.partial = ss.partial[:copy(ss.partial, ss.partial[done:])]
	return len(p), nil
}

// goReply sends, in place of a reply go-smtp wrote, the reply the session
// decided.
func (ss *session) goReply(code int, text []byte) {
	if !ss.greeted {
		// go-smtp's greeting: the session's banner replaces it
		ss.greeted = true
		ss.banner()
		return
	}
	ss.goReplies++
	d := ss.decided
	ss.decided = decision{}
	if d.set {
		ss.answer(d)
		return
	}
	if ss.cmd == "DATA" && ss.goReplies == 1 {
		// go-smtp's go-ahead: Data answers it (startData), or, should
		// go-smtp refuse the DATA itself, it is passed on before the next
		// command (passHeld)
		ss.held = heldReply{set: true, code: code, text: append(ss.held.text[:0], text...)}
		return
	}
	ss.pass(code, text)
}

// pass sends a reply go-smtp made by itself.
func (ss *session) pass(code int, text []byte) {
	if code == 421 {
		ss.s.log.Error().Str("peer", ss.peer.String()).Str("command", ss.cmd).Bytes("reply", text).Msg("go-smtp ended the session")
		ss.reply(421, textTechnicalDifficulties(ss.host()))
		return
	}
	ss.reply(code, string(text))
}

// dropHeld forgets go-smtp's go-ahead once Data answers it.
func (ss *session) dropHeld() { ss.held.set = false }

// passHeld sends go-smtp's held reply to a DATA that it refused by itself.
func (ss *session) passHeld() {
	if ss.held.set {
		ss.held.set = false
		ss.pass(ss.held.code, ss.held.text)
	}
}

// parseReply finds one complete (possibly multi-line) reply at the start of
// b and returns its length, code and text (lines joined by "\n"). The text
// of a one-line reply aliases b; that of a multi-line one is built in
// *scratch.
func parseReply(b []byte, scratch *[]byte) (end, code int, text []byte, ok bool) {
	joined := (*scratch)[:0]
	defer func() { *scratch = joined[:0] }()
	pos := 0
	for {
		nl := bytes.IndexByte(b[pos:], '\n')
		if nl < 0 {
			return 0, 0, nil, false
		}
		line := b[pos : pos+nl]
		first := pos == 0
		pos += nl + 1
		line = bytes.TrimRight(line, "\r")
		if len(line) < 3 || !isDigit(line[0]) || !isDigit(line[1]) || !isDigit(line[2]) {
			return pos, 0, nil, true
		}
		code = int(line[0]-'0')*100 + int(line[1]-'0')*10 + int(line[2]-'0')
		rest := line[3:]
		last := len(rest) == 0 || rest[0] == ' '
		if len(rest) > 0 {
			rest = rest[1:]
		}
		if last && first {
			return pos, code, rest, true
		}
		if !first {
			joined = append(joined, '\n')
		}
		joined = append(joined, rest...)
		if last {
			return pos, code, joined, true
		}
	}
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
