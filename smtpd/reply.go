package smtpd

// Replies: go-smtp's replies are read back from Write and translated into
// KumoMTA's texts here; every reply passes through reply, which runs
// smtp_server_rewrite_response and logs Rejection records.

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/kumogo/kumogo/internal/smtpreply"
)

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

// reply queues one response for the client, running the rewrite event and
// logging a Rejection record for 4xx/5xx.
func (f *frontConn) reply(code int, text string) {
	if f.ended {
		return
	}
	s := f.s
	if s.hasRewrite {
		ctx, cancel := f.ctx()
		nc, nt, err := s.deps.Policy.RewriteResponse(ctx, code, text, f.canonicalCommand(), f.meta)
		cancel()
		if err != nil {
			s.log.Error().Err(err).Msg("smtp_server_rewrite_response failed; response left unchanged")
		} else {
			code, text = nc, nt
		}
	}
	if code >= 400 && !strings.HasPrefix(text, "4.3.2 ") {
		f.logRejection(code, text)
	}
	if strings.IndexByte(text, '\n') < 0 {
		f.out = appendReplyLine(f.out, code, text)
	} else {
		f.out = append(f.out, smtpreply.Format(code, text)...)
	}
	f.replied(code)
}

// replyBytes is reply for a one-line success text held in a session
// buffer: it is copied straight into the output unless the rewrite event
// (which gets a string) has to see it.
func (f *frontConn) replyBytes(code int, text []byte) {
	if f.ended {
		return
	}
	if f.s.hasRewrite || code >= 400 || bytes.IndexByte(text, '\n') >= 0 {
		f.reply(code, string(text))
		return
	}
	f.out = appendReplyLine(f.out, code, text)
	f.replied(code)
}

// appendReplyLine appends the one-line reply "code text\r\n".
func appendReplyLine[T string | []byte](out []byte, code int, text T) []byte {
	out = strconv.AppendInt(out, int64(code), 10)
	out = append(out, ' ')
	out = append(out, text...)
	return append(out, '\r', '\n')
}

func (f *frontConn) replied(code int) {
	if code == 421 {
		f.closing = true
		f.ended = true
	}
	if len(f.out) > 16384 {
		f.flush()
	}
}

func (f *frontConn) flush() {
	if len(f.out) == 0 || f.closed && f.raw == nil {
		return
	}
	f.raw.SetWriteDeadline(time.Now().Add(f.cfg.ClientTimeout))
	if _, err := f.cur.Write(f.out); err != nil {
		f.closing = true
	}
	f.out = f.out[:0]
}

func (f *frontConn) technicalDifficulties(err error) {
	f.s.log.Error().Err(err).Str("peer", f.peer.String()).Str("command", f.cmd).Msg("policy error; ending session")
	f.reply(421, textTechnicalDifficulties(f.host()))
}

// policyFailure answers a policy event's error: a rejection is sent as
// chosen by the policy, anything else ends the session.
func (f *frontConn) policyFailure(err error) {
	var rej *smtpreply.Rejection
	if errors.As(err, &rej) {
		f.reply(rej.Code, rej.Text)
		f.applyDisconnect(rej)
		return
	}
	f.technicalDifficulties(err)
}

func (f *frontConn) applyDisconnect(rej *smtpreply.Rejection) {
	switch rej.Mode {
	case smtpreply.ForceDisconnect:
		f.closing = true
	case smtpreply.FollowWith421:
		if rej.Code != 421 {
			f.reply(421, f.host()+" disconnecting due to previous error")
		}
		f.closing = true
	}
}

// goReply translates a reply written by go-smtp for the current command.
func (f *frontConn) goReply(code int, raw []byte) {
	if f.swallow > 0 {
		f.swallow--
		return
	}
	if !f.greeted {
		f.greeted = true
		f.banner()
		return
	}
	// replies produced by our session carry their final text already;
	// closeSet tells that the policy chose to disconnect. text stays empty
	// until a translation sets it; the raw text is used otherwise (so the
	// common replies are translated without allocating).
	var text string
	var textB []byte // a translation held in a session buffer
	// end: the reply ends the transaction. Its state is cleared after the
	// reply, so that a Rejection record still names the transaction's
	// sender and last recipient.
	end := false
	switch f.cmd {
	case "EHLO", "HELO":
		if code == 250 {
			f.helloDone()
			return
		}
	case "MAIL":
		switch {
		case code == 250:
			f.hasMail = true
			textB = f.mailReply
		case bytes.HasPrefix(raw, []byte("5.5.2 Was expecting")):
			code, text = 501, "5.1.7 Invalid sender address syntax: "+argOf(f.cmdString())
		case bytes.HasPrefix(raw, []byte("5.3.4 ")):
			text = "5.3.4 message too big"
		}
	case "RCPT":
		switch {
		case code == 250:
			f.nrcpt++
			f.rcptTotal++
			textB = f.rcptReply
		case bytes.HasPrefix(raw, []byte("5.5.2 Was expecting")):
			code, text = 501, "5.1.3 Invalid recipient address syntax"
		}
	case "DATA":
		if code == 354 {
			f.mode = modeData
			f.scan.reset(f.cfg.LineLengthHardLimit)
			f.dataNext.Store(true)
			f.startBody()
			text = "Send body; end with CRLF.CRLF"
			break
		}
		end = true
		textB = f.takeDataReply(code)
	case "BDAT":
		if !bytes.HasPrefix(raw, []byte("2.0.0 Continue")) {
			f.bdatOpen = false // go-smtp has reset the transaction
			end = true
			textB = f.takeDataReply(code)
		}
	case "RSET":
		if code == 250 {
			text = "Reset state"
		}
		end = true
	case "QUIT":
		code, text = 221, "So long, and thanks for all the fish!"
		f.closing = true
	}
	if len(textB) > 0 {
		f.replyBytes(code, textB)
	} else {
		if text == "" {
			switch {
			case bytes.HasPrefix(raw, []byte("4.0.0 Internal server error")) || (code == 421 && bytes.HasPrefix(raw, []byte("4.4.2 Idle timeout"))):
				code, text = 421, textTechnicalDifficulties(f.host())
			case bytes.HasPrefix(raw, []byte("5.0.0 Error: transaction failed: ")):
				// go-smtp's text for an error that is not an SMTP reply:
				// Go error text (addresses included) never goes on the wire
				f.s.log.Error().Str("peer", f.peer.String()).Str("command", f.cmd).Str("error", string(raw)).Msg("transaction failed; ending session")
				code, text = 421, textTechnicalDifficulties(f.host())
			default:
				text = string(raw)
			}
		}
		f.reply(code, text)
	}
	if end {
		f.endTxn()
	}
	if f.closeSet {
		f.closeSet = false
		f.applyDisconnect(&smtpreply.Rejection{Code: code, Mode: f.closeMode})
	}
}

// setDataReply sets the text that replaces go-smtp's reply when receive
// returns nil.
func (f *frontConn) setDataReply(prefix string, ids []byte) {
	f.dataReply = append(append(f.dataReply[:0], prefix...), ids...)
	f.dataOK = true
}

// takeDataReply returns the text receive left for the reply to a DATA or
// last BDAT (nil when there is none).
func (f *frontConn) takeDataReply(code int) []byte {
	if !f.dataOK {
		return nil
	}
	f.dataOK = false
	if code != 250 {
		return nil
	}
	return f.dataReply
}

func argOf(line string) string {
	if i := strings.IndexByte(line, ':'); i >= 0 {
		return strings.TrimSpace(line[i+1:])
	}
	return line
}
