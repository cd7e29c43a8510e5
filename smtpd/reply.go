package smtpd

// Replies: every reply passes through reply, which runs
// smtp_server_rewrite_response and logs Rejection records, and is queued
// for the socket; replies to pipelined commands go out in one write.

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/kumogo/kumogo/internal/smtpreply"
)

// reply queues one response for the client, running the rewrite event and
// logging a Rejection record for 4xx/5xx.
func (ss *session) reply(code int, text string) {
	if ss.ended {
		return
	}
	s := ss.s
	if s.hasRewrite {
		ctx, cancel := ss.ctx()
		nc, nt, err := s.deps.Policy.RewriteResponse(ctx, code, text, ss.canonicalCommand(), ss.meta)
		cancel()
		if err != nil {
			s.log.Error().Err(err).Msg("smtp_server_rewrite_response failed; response left unchanged")
		} else {
			code, text = nc, nt
		}
	}
	if code >= 400 && !strings.HasPrefix(text, "4.3.2 ") {
		ss.logRejection(code, text)
	}
	if strings.IndexByte(text, '\n') < 0 {
		ss.out = appendReplyLine(ss.out, code, text)
	} else {
		ss.out = append(ss.out, smtpreply.Format(code, text)...)
	}
	ss.replied(code)
}

// replyBytes is reply for a one-line success text held in a session
// buffer: it is copied straight into the output unless the rewrite event
// (which gets a string) has to see it.
func (ss *session) replyBytes(code int, text []byte) {
	if ss.ended {
		return
	}
	if ss.s.hasRewrite || code >= 400 || bytes.IndexByte(text, '\n') >= 0 {
		ss.reply(code, string(text))
		return
	}
	ss.out = appendReplyLine(ss.out, code, text)
	ss.replied(code)
}

// appendReplyLine appends the one-line reply "code text\r\n".
func appendReplyLine[T string | []byte](out []byte, code int, text T) []byte {
	out = strconv.AppendInt(out, int64(code), 10)
	out = append(out, ' ')
	out = append(out, text...)
	return append(out, '\r', '\n')
}

func (ss *session) replied(code int) {
	if code == 421 {
		ss.closing = true
		ss.ended = true
	}
	if len(ss.out) > 16384 {
		ss.flush()
	}
}

func (ss *session) flush() {
	if len(ss.out) == 0 || ss.closed && ss.raw == nil {
		return
	}
	ss.raw.SetWriteDeadline(time.Now().Add(ss.cfg.ClientTimeout))
	if _, err := ss.cur.Write(ss.out); err != nil {
		ss.closing = true
	}
	ss.out = ss.out[:0]
}

// policyReply is the one place where a policy event's error becomes a
// reply: a rejection is answered as the policy chose (kumo.reject, with its
// disconnect mode); anything else is logged and ends the session with
// KumoMTA's 421.
func (ss *session) policyReply(err error) decision {
	var rej *smtpreply.Rejection
	if errors.As(err, &rej) {
		return decision{code: rej.Code, text: rej.Text, mode: rej.Mode}
	}
	ss.s.log.Error().Err(err).Str("peer", ss.peer.String()).Str("command", ss.cmd).Msg("policy error; ending session")
	return decision{code: 421, text: textTechnicalDifficulties(ss.host())}
}

// answer sends a decided reply now, then does what it asks for after it.
func (ss *session) answer(d decision) {
	if d.textB != nil {
		ss.replyBytes(d.code, d.textB)
	} else {
		ss.reply(d.code, d.text)
	}
	if d.quit {
		ss.closing = true
	}
	switch d.mode {
	case smtpreply.ForceDisconnect:
		ss.closing = true
	case smtpreply.FollowWith421:
		if d.code != 421 {
			ss.reply(421, ss.host()+" disconnecting due to previous error")
		}
		ss.closing = true
	}
}
