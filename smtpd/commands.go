package smtpd

// Commands: the session reads each command line and answers it, or
// forwards it to go-smtp.

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"math"
	"net"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

func (ss *session) defaultExtensions() []string {
	exts := []string{"PIPELINING", "ENHANCEDSTATUSCODES", "8BITMIME", "SMTPUTF8", "CHUNKING"}
	if ss.tls == nil && ss.tlsConf != nil {
		exts = append(exts, "STARTTLS")
	}
	if ss.tls != nil {
		exts = append(exts, "AUTH PLAIN")
	}
	if ss.cfg.AllowXClient {
		exts = append(exts, xclientExtension)
	}
	return exts
}

// helloReply is the reply to an accepted EHLO or HELO.
func (ss *session) helloReply(verb, domain string, exts []string) string {
	if verb == "HELO" {
		return "Hello " + domain + "!"
	}
	var sb strings.Builder
	sb.WriteString(ss.host())
	sb.WriteString(" Aloha ")
	sb.WriteString(domain)
	for _, e := range exts {
		sb.WriteByte('\n')
		sb.WriteString(e)
	}
	return sb.String()
}

// nextCommand reads one command line. It either forwards it to go-smtp
// (ss.fwd), having checked it, or answers it itself.
func (ss *session) nextCommand() error {
	s := ss.s
	ss.passHeld()
	ss.goReplies = 0
	if ss.rd.Buffered() == 0 {
		ss.flush()
		if ss.closing {
			return io.EOF
		}
	}
	// until a line is read, a reply answers no command
	ss.cmd, ss.cmdLine, ss.cmdStr, ss.hasStr = "", nil, "", false
	ss.idle.Store(true)
	if s.shutting.Load() && ss.rd.Buffered() == 0 {
		ss.idle.Store(false)
		ss.reply(421, textShuttingDown(ss.host()))
		ss.flush()
		return io.EOF
	}
	ss.raw.SetReadDeadline(time.Now().Add(ss.cfg.ClientTimeout))
	line, tooLong, err := ss.readLine(ss.cmdBuf)
	ss.idle.Store(false)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			if s.shutting.Load() {
				ss.reply(421, textShuttingDown(ss.host()))
			} else {
				ss.reply(421, textIdleTooLong(ss.host()))
			}
			ss.flush()
		}
		ss.closing = true
		return io.EOF
	}
	if line != nil {
		ss.cmdBuf = line[:0] // keep the grown buffer for the next command
	}
	ss.cmdLine, ss.cmdStr, ss.hasStr = line, "", false
	if tooLong {
		ss.cmd = ""
		ss.reply(500, replyLineTooLong.Message)
		return nil
	}
	if !utf8.Valid(line) {
		ss.cmd = ""
		ss.reply(501, "5.5.2 Invalid UTF-8 in command")
		return nil
	}
	if hasControl(line) {
		// A bare CR (or NUL, ESC, ...) is never part of a valid command,
		// and echoing it (EHLO's "Aloha <domain>") would break the reply.
		ss.cmd = ""
		ss.reply(501, "Syntax error in command or arguments: control character in command")
		return nil
	}
	verb, arg := line, []byte(nil)
	if i := bytes.IndexByte(line, ' '); i >= 0 {
		verb, arg = line[:i], bytes.TrimSpace(line[i+1:])
	}
	// An ASCII verb is upper-cased into a small array and looked up
	// there, so that the usual commands cost no allocation.
	var ub [8]byte
	if len(verb) <= len(ub) && isASCII(verb) {
		for i, c := range verb {
			if 'a' <= c && c <= 'z' {
				c -= 'a' - 'A'
			}
			ub[i] = c
		}
		if ss.cmd = knownVerb(string(ub[:len(verb)])); ss.cmd == "" {
			ss.cmd = string(ub[:len(verb)])
		}
	} else {
		ss.cmd = strings.ToUpper(string(verb))
	}
	switch ss.cmd {
	case "EHLO", "HELO":
		return ss.cmdHello(ss.cmd, string(arg))
	case "MAIL":
		switch {
		case !ss.ehloOK:
			ss.reply(503, textEhloFirst)
		case ss.t.hasMail:
			ss.reply(503, "5.5.0 MAIL FROM already issued; you must RSET first")
		case !pathSyntaxOK(arg, "FROM:", false):
			ss.reply(501, replyBadSender(argOf(ss.cmdString())).Message)
		default:
			ss.forward(line)
		}
	case "RCPT":
		switch {
		case !ss.t.hasMail:
			ss.reply(503, "5.5.0 MAIL FROM must be issued first")
		case !pathSyntaxOK(arg, "TO:", true):
			ss.reply(501, replyBadRecipient.Message)
		default:
			ss.forward(line)
		}
	case "DATA":
		switch {
		case len(ss.t.rcpts) == 0:
			ss.reply(503, textRcptFirst)
		case len(arg) > 0:
			ss.reply(501, "Syntax error in command or arguments: DATA takes no arguments")
		default:
			ss.forward(line)
		}
	case "BDAT":
		ss.cmdBDAT(line, arg)
	case "RSET":
		ss.decide(decision{code: 250, text: "Reset state"})
		ss.forward(line)
	case "QUIT":
		ss.decide(decision{code: 221, text: "So long, and thanks for all the fish!", quit: true})
		ss.forward(line)
	case "NOOP":
		ss.reply(250, "the goggles do nothing")
	case "STARTTLS":
		return ss.cmdStartTLS()
	case "AUTH":
		ss.cmdAuth(string(arg))
	case "XCLIENT":
		ss.cmdXClient(string(arg))
	case "":
		ss.reply(501, "Syntax error in command or arguments: empty command")
	default:
		ss.reply(502, textUnimplemented)
	}
	return nil
}

// readLine reads a command line without its line ending, appending it to
// dst[:0]. Lines longer than line_length_hard_limit are consumed and
// reported as tooLong.
func (ss *session) readLine(dst []byte) ([]byte, bool, error) {
	limit := ss.cfg.LineLengthHardLimit
	if limit <= 0 || limit > maxCommandLine {
		limit = maxCommandLine // a command line is never unbounded
	}
	var long []byte
	over := false
	for {
		chunk, err := ss.rd.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			if !over {
				long = append(long, chunk...)
				if len(long) > limit {
					over = true
					long = nil
				}
			}
			continue
		}
		if err != nil {
			return nil, false, err
		}
		if over {
			return nil, true, nil
		}
		line := append(append(dst[:0], long...), chunk...)
		line = bytes.TrimRight(line, "\r\n")
		if len(line) > limit {
			return nil, true, nil
		}
		return line, false, nil
	}
}

// knownVerb returns the constant name of a command the session handles,
// or "". v does not escape, so callers may pass a temporary conversion.
func knownVerb(v string) string {
	for _, k := range [...]string{"EHLO", "HELO", "MAIL", "RCPT", "DATA", "BDAT", "RSET", "QUIT", "NOOP", "STARTTLS", "AUTH", "XCLIENT"} {
		if v == k {
			return k
		}
	}
	return ""
}

func isASCII(b []byte) bool {
	for _, c := range b {
		if c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// canonicalCommand is the command that smtp_server_rewrite_response is
// given, as KumoMTA gives it: the verb in upper case ("DATA" for the
// client's "data", also for the reply at the end of the body), followed
// by the arguments as the client sent them, with MAIL's "FROM:" and RCPT's
// "TO:" in upper case. It is "" (nil for the policy) for an unknown
// command and for replies that answer no command (banner, idle timeout).
func (ss *session) canonicalCommand() string {
	if knownVerb(ss.cmd) == "" {
		return ""
	}
	_, arg, ok := strings.Cut(ss.cmdString(), " ")
	if !ok {
		return ss.cmd
	}
	arg = strings.TrimLeft(arg, " ")
	for _, kw := range [...]string{"FROM:", "TO:"} {
		if len(arg) >= len(kw) && strings.EqualFold(arg[:len(kw)], kw) {
			arg = kw + arg[len(kw):]
		}
	}
	return ss.cmd + " " + arg
}

// cmdString returns the current command line as a string (converted once
// per command, only when a reply needs it).
func (ss *session) cmdString() string {
	if !ss.hasStr {
		ss.cmdStr, ss.hasStr = string(ss.cmdLine), true
	}
	return ss.cmdStr
}

// forward hands the client's command line to go-smtp.
func (ss *session) forward(line []byte) {
	ss.fwdBuf = append(append(ss.fwdBuf[:0], line...), '\r', '\n')
	ss.fwd = ss.fwdBuf
}

func (ss *session) cmdHello(verb, arg string) error {
	domain := arg
	if i := strings.IndexByte(domain, ' '); i >= 0 {
		domain = domain[:i]
	}
	if domain == "" {
		ss.reply(501, "Syntax error in command or arguments: "+verb+" requires a domain")
		return nil
	}
	var exts []string
	if verb == "EHLO" {
		exts = ss.defaultExtensions()
	}
	if ss.s.hasEhlo {
		ctx, cancel := ss.ctx()
		got, err := ss.s.deps.Policy.Ehlo(ctx, domain, ss.meta, exts)
		cancel()
		if err != nil {
			ss.answer(ss.policyReply(err))
			return nil
		}
		if got != nil && verb == "EHLO" {
			exts = got
		}
	}
	// go-smtp takes the same domain (the argument up to a space) and
	// resets its transaction, which calls Reset
	ss.helo = domain
	ss.ehloOK = true
	ss.meta.Set("ehlo_domain", domain)
	ss.decide(decision{code: 250, text: ss.helloReply(verb, domain, exts)})
	ss.forward(ss.cmdLine)
	return nil
}

// cmdBDAT answers BDAT. Every chunk is read by the session itself into
// the transaction's body (body.go says why). A chunk that is not the last
// is answered here; after the last one the session finishes the message
// (endBDAT) and hands go-smtp an empty last chunk, so that go-smtp ends its
// transaction and answers with the reply the session decided.
func (ss *session) cmdBDAT(line, arg []byte) {
	sizeArg, rest := nextField(arg)
	last, rest := nextField(rest)
	extra, _ := nextField(rest)
	if len(sizeArg) == 0 || len(extra) > 0 || (len(last) > 0 && !bytes.EqualFold(last, []byte("LAST"))) {
		ss.reply(501, "Syntax error in command or arguments: BDAT <size> [LAST]")
		return
	}
	size, ok := parseChunkSize(sizeArg)
	if !ok {
		ss.reply(501, "Syntax error in command or arguments: invalid BDAT size")
		return
	}
	if len(ss.t.rcpts) == 0 {
		ss.reply(503, textRcptFirst)
		ss.skipBytes(int64(size))
		return
	}
	ss.startBody()
	if !ss.readChunk(int64(size)) {
		return // the client has been answered and the session ends
	}
	if len(last) == 0 {
		ss.reply(250, replyContinue.Message)
		return
	}
	ss.bdatEnd = ss.endBDAT()
	ss.forward(bdatEmptyLast)
}

// bdatEmptyLast is the command go-smtp is given for a last BDAT chunk that
// the session has read and processed already.
var bdatEmptyLast = []byte("BDAT 0 LAST")

// nextField returns the first whitespace-separated field of b (as
// strings.Fields splits) and what follows it.
func nextField(b []byte) (field, rest []byte) {
	start := -1
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if unicode.IsSpace(r) {
			if start >= 0 {
				return b[start:i], b[i:]
			}
		} else if start < 0 {
			start = i
		}
		i += n
	}
	if start < 0 {
		return nil, nil
	}
	return b[start:], nil
}

// parseChunkSize parses a BDAT chunk size: decimal digits only, at most
// 2^32-1 (strconv.ParseUint(s, 10, 32) without the string).
func parseChunkSize(b []byte) (uint64, bool) {
	if len(b) == 0 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		if n = n*10 + uint64(c-'0'); n > math.MaxUint32 {
			return 0, false
		}
	}
	return n, true
}

// skipBytes discards n bytes of input (the chunk of a refused BDAT).
func (ss *session) skipBytes(n int64) {
	ss.flush()
	ss.raw.SetReadDeadline(time.Now().Add(ss.cfg.ClientTimeout))
	if _, err := ss.rd.Discard(int(n)); err != nil {
		ss.closing = true
	}
}

// hasControl reports whether line holds an ASCII control character other
// than TAB.
func hasControl(line []byte) bool {
	for _, c := range line {
		if c < ' ' && c != '\t' || c == 0x7f {
			return true
		}
	}
	return false
}

// argOf returns what follows the colon of a MAIL or RCPT line (the whole
// line when there is none).
func argOf(line string) string {
	if i := strings.IndexByte(line, ':'); i >= 0 {
		return strings.TrimSpace(line[i+1:])
	}
	return line
}
