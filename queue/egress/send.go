package egress

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/kumogo/kumogo/internal/message"
	"github.com/kumogo/kumogo/internal/smtpreply"
)

// Envelope is the sender and recipients of one transaction.
type Envelope struct {
	Sender     message.Address
	Recipients []message.Address
}

// Result holds one response per recipient, in the envelope's order: the
// RCPT rejection, or the response that ended the transaction for the
// recipient (MAIL or DATA rejection, the final response after the body, an
// internal 554 for 8-bit content the peer cannot take, or the synthetic
// 400/421 of a transport failure). Group equal responses for log records.
type Result struct {
	Responses []smtpreply.Response
}

// Send runs one mail transaction on the session: RSET first when the
// session already carried one and enable_rset is set; then MAIL FROM, one
// RCPT TO per recipient and DATA, pipelined in a single write when the
// peer offers PIPELINING and enable_pipelining is set; then the body,
// dot-stuffed and terminated, or, when the peer offers CHUNKING and
// p.EnableChunking is set, as one "BDAT <n> LAST" chunk without the DATA
// command. data is the whole message with CRLF line endings; it is not
// modified or retained.
//
// Before any I/O, an 8-bit body to a peer without 8BITMIME and an 8-bit
// envelope to a peer without SMTPUTF8 give KumoMTA's internal 554
// responses (unless ignore_8bit_checks), and a body larger than the peer's
// SIZE gives 552 5.3.4. MAIL FROM carries SIZE=, BODY=8BITMIME and
// SMTPUTF8 as the peer allows.
//
// The error is non-nil when the connection failed (transport error,
// timeout, context end): the responses then hold the synthetic 400 or
// "421 4.4.2 ... Timed Out ..." for every recipient not decided before
// the failure, and the session is unusable. A 421 from the peer also makes
// it unusable but is not an error.
func (s *Session) Send(ctx context.Context, env Envelope, data []byte) (Result, error) {
	n := len(env.Recipients)
	res := Result{Responses: make([]smtpreply.Response, n)}
	if n == 0 {
		return res, errors.New("egress: no recipients")
	}
	if !s.Usable() {
		fillAll(res.Responses, smtpreply.Response{Code: 400, Content: textSendFailed + ErrUnusable.Error()})
		return res, ErrUnusable
	}

	// Checks that need no I/O.
	body8 := has8bit(data)
	env8 := !isASCII(env.Sender.User) || !isASCII(env.Sender.Domain)
	for _, r := range env.Recipients {
		env8 = env8 || !isASCII(r.User) || !isASCII(r.Domain)
	}
	_, has8bitmime := s.ext["8BITMIME"]
	_, hasUTF8 := s.ext["SMTPUTF8"]
	if !s.path.Ignore8BitChecks {
		if body8 && !has8bitmime {
			fillAll(res.Responses, smtpreply.Response{Code: 554, Enhanced: enh(5, 6, 3), Content: text8BitData})
			return res, nil
		}
		if env8 && !hasUTF8 {
			fillAll(res.Responses, smtpreply.Response{Code: 554, Enhanced: enh(5, 6, 7), Content: text8BitEnvelope})
			return res, nil
		}
	}
	sizeParam, hasSize := s.ext["SIZE"]
	if hasSize {
		if limit, err := strconv.ParseInt(strings.TrimSpace(sizeParam), 10, 64); err == nil && limit > 0 && int64(len(data)) > limit {
			fillAll(res.Responses, smtpreply.Response{Code: 552, Enhanced: enh(5, 3, 4), Content: fmt.Sprintf(
				"KumoMTA internal: message size %d exceeds the size limit %d advertised by %s", len(data), limit, s.peer())})
			return res, nil
		}
	}

	defer s.watch(ctx)()
	_, hasPipelining := s.ext["PIPELINING"]
	_, hasChunking := s.ext["CHUNKING"]
	pipeline := hasPipelining && s.path.EnablePipelining
	chunking := hasChunking && s.path.EnableChunking

	// Build the command lines.
	var mail strings.Builder
	mail.WriteString("MAIL FROM:<")
	writePath(&mail, env.Sender)
	mail.WriteByte('>')
	if hasSize {
		mail.WriteString(" SIZE=")
		mail.WriteString(strconv.Itoa(len(data)))
	}
	if body8 && has8bitmime {
		mail.WriteString(" BODY=8BITMIME")
	}
	if env8 && hasUTF8 {
		mail.WriteString(" SMTPUTF8")
	}
	mail.WriteString("\r\n")
	cmds := make([]command, 0, n+3)
	if s.txns > 0 && s.path.EnableRSET {
		cmds = append(cmds, command{"RSET\r\n", s.path.RsetTimeout})
	}
	cmds = append(cmds, command{mail.String(), s.path.MailFromTimeout})
	for _, r := range env.Recipients {
		var b strings.Builder
		b.Grow(len(r.User) + len(r.Domain) + 14)
		b.WriteString("RCPT TO:<")
		writePath(&b, r)
		b.WriteString(">\r\n")
		cmds = append(cmds, command{b.String(), s.path.RcptToTimeout})
	}
	// The body goes after DATA's 354, or as one BDAT LAST chunk: in the
	// same write as the envelope when pipelining (RFC 3030 lets BDAT be
	// pipelined; a peer that refused every recipient rejects the chunk and
	// discards it), else after the RCPT responses.
	var payload []byte
	switch {
	case !chunking:
		cmds = append(cmds, command{"DATA\r\n", s.path.DataTimeout})
	case pipeline:
		cmds = append(cmds, command{"BDAT " + strconv.Itoa(len(data)) + " LAST\r\n", s.path.DataDotTimeout})
		payload = data
	}
	s.txns++

	resps, err := s.exchange(ctx, cmds, pipeline, payload)
	// Which responses belong to what.
	i := 0
	if cmds[0].line == "RSET\r\n" {
		if len(resps) > 0 && resps[0].Code != 250 {
			// A peer that refuses RSET is in no state for a transaction.
			s.broken = true
			fillAll(res.Responses, resps[0])
			return res, nil
		}
		i = 1
	}
	if err != nil && len(resps) <= i {
		fillAll(res.Responses, transportResponse(err))
		return res, err
	}
	mailResp := resps[i]
	rcptResps := resps[i+1:]
	var tailResp *smtpreply.Response // DATA's or the pipelined BDAT's
	if len(rcptResps) > n {
		tailResp = &rcptResps[n]
		rcptResps = rcptResps[:n]
	}

	accepted := 0
	for j := range res.Responses {
		switch {
		case mailResp.Code/100 != 2:
			res.Responses[j] = mailResp
		case j < len(rcptResps):
			res.Responses[j] = rcptResps[j]
			if rcptResps[j].Code/100 == 2 {
				accepted++
			}
		default:
			res.Responses[j] = transportResponse(err)
		}
	}
	if err != nil {
		// Recipients accepted so far cannot get the message now.
		fillAccepted(res.Responses, rcptResps, mailResp, transportResponse(err))
		return res, err
	}
	if mailResp.Code/100 != 2 || accepted == 0 {
		if !chunking && tailResp != nil && tailResp.Code == 354 {
			// RFC 2920 §3.1: DATA was accepted although nobody can receive
			// the message; end it with a lone dot.
			if _, err := s.dataBody(ctx, nil); err != nil {
				return res, err
			}
		}
		return res, nil
	}

	var final smtpreply.Response
	switch {
	case payload != nil:
		final = *tailResp
	case chunking:
		final, err = s.bdat(ctx, data)
	case tailResp.Code != 354:
		final = *tailResp
	default:
		final, err = s.dataBody(ctx, data)
	}
	if err != nil {
		final = transportResponse(err)
	}
	fillAccepted(res.Responses, rcptResps, mailResp, final)
	return res, err
}

// SendMessage is Send with msg's sender, recipients and data.
func (s *Session) SendMessage(ctx context.Context, msg *message.Message) (Result, error) {
	return s.Send(ctx, Envelope{Sender: msg.Sender(), Recipients: msg.Recipients()}, msg.Data())
}

type command struct {
	line    string
	timeout time.Duration
}

// exchange writes cmds and reads their responses: all in one write
// (followed by payload, the chunk of a final BDAT) when pipelining, else
// one at a time, stopping after a refused MAIL FROM (RSET excepted) and
// before DATA when no recipient was accepted. It returns the responses
// read before any transport error.
func (s *Session) exchange(ctx context.Context, cmds []command, pipeline bool, payload []byte) ([]smtpreply.Response, error) {
	resps := make([]smtpreply.Response, 0, len(cmds))
	if pipeline {
		var total time.Duration
		buf := s.cmdBuf[:0]
		for _, c := range cmds {
			total += c.timeout
			buf = append(buf, c.line...)
		}
		s.cmdBuf = buf
		what := string(buf[:min(len(buf), 512)])
		if payload != nil {
			total += s.path.DataTimeout
		}
		if err := s.deadline(ctx, true, total); err != nil {
			return resps, s.fail(ctx, what, true, total, err)
		}
		bufs := net.Buffers{buf, payload}
		if _, err := bufs.WriteTo(s.conn); err != nil {
			return resps, s.fail(ctx, what, true, total, err)
		}
		for _, c := range cmds {
			r, err := s.read(ctx, c.line, c.timeout)
			if err != nil {
				return resps, err
			}
			resps = append(resps, r)
		}
		return resps, nil
	}
	for k, c := range cmds {
		r, err := s.roundTrip(ctx, c.line, c.timeout)
		if err != nil {
			return resps, err
		}
		resps = append(resps, r)
		if strings.HasPrefix(c.line, "MAIL ") && r.Code/100 != 2 {
			return resps, nil
		}
		if strings.HasPrefix(c.line, "RCPT ") && k+1 < len(cmds) && strings.HasPrefix(cmds[k+1].line, "DATA") {
			// Without pipelining, DATA is only worth sending when a
			// recipient was accepted.
			ok := false
			for _, rr := range resps {
				if strings.HasPrefix(rr.Command, "RCPT ") && rr.Code/100 == 2 {
					ok = true
					break
				}
			}
			if !ok {
				return resps, nil
			}
		}
	}
	return resps, nil
}

// dataBody sends the dot-stuffed body and the terminating dot (only the
// dot when data is nil) and reads the final response.
func (s *Session) dataBody(ctx context.Context, data []byte) (smtpreply.Response, error) {
	const dot = ".\r\n"
	timeout := s.path.DataTimeout
	if err := s.deadline(ctx, true, timeout); err != nil {
		return smtpreply.Response{}, s.fail(ctx, dot, true, timeout, err)
	}
	bufs := dataWire(data)
	if _, err := bufs.WriteTo(s.conn); err != nil {
		return smtpreply.Response{}, s.fail(ctx, dot, true, timeout, err)
	}
	return s.read(ctx, dot, s.path.DataDotTimeout)
}

var (
	crlfDot   = []byte("\r\n.\r\n")
	dotCRLF   = []byte(".\r\n")
	lfDot     = []byte("\n.\r\n")
	lfCRLFDot = []byte("\n\r\n.\r\n")
)

// dataWire returns what follows a 354: data dot-stuffed, then the
// terminating dot on a line of its own. The terminator always follows a
// CRLF whose CR is not itself preceded by a CR: data that does not end with
// a CRLF gets one (a final bare LF is sent as CRLF, a final bare CR gets its
// LF), since a strict peer would not see "\n.\r\n" as the end; and data
// ending in CR CR LF (a bare CR kept by invalid_line_endings = "Allow") gets
// an empty line before the terminator, since a peer reading as
// net/textproto's dot reader does takes CR CR LF for no line end and would
// not see "\r\r\n.\r\n" as the end either.
func dataWire(data []byte) net.Buffers {
	n := len(data)
	switch {
	case n == 0:
		return net.Buffers{dotCRLF}
	case data[n-1] == '\r':
		if n >= 2 && data[n-2] == '\r' {
			return append(stuff(data), lfCRLFDot)
		}
		return append(stuff(data), lfDot)
	case data[n-1] != '\n':
		return append(stuff(data), crlfDot)
	case n == 1 || data[n-2] != '\r':
		return append(stuff(data[:n-1]), crlfDot)
	case n >= 3 && data[n-3] == '\r':
		return append(stuff(data), crlfDot)
	}
	return append(stuff(data), dotCRLF)
}

// bdat sends data as one last chunk and reads the response.
func (s *Session) bdat(ctx context.Context, data []byte) (smtpreply.Response, error) {
	cmd := "BDAT " + strconv.Itoa(len(data)) + " LAST\r\n"
	timeout := s.path.DataTimeout
	if err := s.deadline(ctx, true, timeout); err != nil {
		return smtpreply.Response{}, s.fail(ctx, cmd, true, timeout, err)
	}
	bufs := net.Buffers{[]byte(cmd), data}
	if _, err := bufs.WriteTo(s.conn); err != nil {
		return smtpreply.Response{}, s.fail(ctx, cmd, true, timeout, err)
	}
	return s.read(ctx, cmd, s.path.DataDotTimeout)
}

// stuff returns data as segments with a '.' inserted before every line
// that starts with one (RFC 5321 §4.5.2), without copying the body.
func stuff(data []byte) net.Buffers {
	bufs := make(net.Buffers, 0, 2)
	start := 0
	if len(data) > 0 && data[0] == '.' {
		bufs = append(bufs, dotOnly)
	}
	for {
		k := bytes.Index(data[start:], nlDot)
		if k < 0 {
			break
		}
		cut := start + k + 1 // after the '\n'
		bufs = append(bufs, data[start:cut], dotOnly)
		start = cut
	}
	if start < len(data) {
		bufs = append(bufs, data[start:])
	}
	return bufs
}

var (
	nlDot   = []byte("\n.")
	dotOnly = []byte(".")
)

func transportResponse(err error) smtpreply.Response {
	var ie *ioError
	if errors.As(err, &ie) {
		return ie.response()
	}
	return smtpreply.Response{Code: 400, Content: textSendFailed + err.Error()}
}

func fillAll(dst []smtpreply.Response, r smtpreply.Response) {
	for i := range dst {
		dst[i] = r
	}
}

// fillAccepted sets r for every recipient whose RCPT was accepted.
func fillAccepted(dst, rcpt []smtpreply.Response, mail smtpreply.Response, r smtpreply.Response) {
	if mail.Code/100 != 2 {
		return
	}
	for i := range dst {
		if i < len(rcpt) && rcpt[i].Code/100 == 2 {
			dst[i] = r
		}
	}
}

// has8bit reports whether any byte has the high bit set.
func has8bit(b []byte) bool {
	const hi = 0x8080808080808080
	for len(b) >= 32 {
		v := binary.LittleEndian.Uint64(b) | binary.LittleEndian.Uint64(b[8:]) |
			binary.LittleEndian.Uint64(b[16:]) | binary.LittleEndian.Uint64(b[24:])
		if v&hi != 0 {
			return true
		}
		b = b[32:]
	}
	for _, c := range b {
		if c >= 0x80 {
			return true
		}
	}
	return false
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// writePath renders an address for MAIL FROM / RCPT TO, quoting the local
// part when it is not a dot-string.
func writePath(b *strings.Builder, a message.Address) {
	if a.IsNull() {
		return
	}
	if isDotString(a.User) {
		b.WriteString(a.User)
	} else {
		b.WriteByte('"')
		for i := 0; i < len(a.User); i++ {
			c := a.User[i]
			if c == '"' || c == '\\' {
				b.WriteByte('\\')
			}
			b.WriteByte(c)
		}
		b.WriteByte('"')
	}
	if a.Domain != "" {
		b.WriteByte('@')
		b.WriteString(a.Domain)
	}
}

func isDotString(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x80 || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			continue
		}
		if !strings.ContainsRune("!#$%&'*+-/=?^_`{|}~.", rune(c)) {
			return false
		}
	}
	return true
}
