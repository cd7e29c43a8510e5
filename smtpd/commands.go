package smtpd

// Commands: the front end reads each command line and answers it, or
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

func (f *frontConn) defaultExtensions() []string {
	exts := []string{"PIPELINING", "ENHANCEDSTATUSCODES", "8BITMIME", "SMTPUTF8", "CHUNKING"}
	if f.tls == nil && f.tlsConf != nil {
		exts = append(exts, "STARTTLS")
	}
	if f.tls != nil {
		exts = append(exts, "AUTH PLAIN")
	}
	if f.cfg.AllowXClient {
		exts = append(exts, xclientExtension)
	}
	return exts
}

func (f *frontConn) helloDone() {
	f.ehloOK = true
	f.endTxn()
	f.meta.Set("ehlo_domain", f.helo)
	if f.cmd == "HELO" {
		f.reply(250, "Hello "+f.helo+"!")
		return
	}
	var sb strings.Builder
	sb.WriteString(f.host())
	sb.WriteString(" Aloha ")
	sb.WriteString(f.helo)
	for _, e := range f.pendExts {
		sb.WriteByte('\n')
		sb.WriteString(e)
	}
	f.reply(250, sb.String())
}

// nextCommand reads one command line. It either forwards it to go-smtp
// (f.fwd) or answers it itself.
func (f *frontConn) nextCommand() error {
	s := f.s
	if f.rd.Buffered() == 0 {
		f.flush()
		if f.closing {
			return io.EOF
		}
	}
	// until a line is read, a reply answers no command
	f.cmd, f.cmdLine, f.cmdStr, f.hasStr = "", nil, "", false
	f.idle.Store(true)
	if s.shutting.Load() && f.rd.Buffered() == 0 {
		f.idle.Store(false)
		f.reply(421, textShuttingDown(f.host()))
		f.flush()
		return io.EOF
	}
	f.raw.SetReadDeadline(time.Now().Add(f.cfg.ClientTimeout))
	line, tooLong, err := f.readLine(f.cmdBuf)
	f.idle.Store(false)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			if s.shutting.Load() {
				f.reply(421, textShuttingDown(f.host()))
			} else {
				f.reply(421, textIdleTooLong(f.host()))
			}
			f.flush()
		}
		f.closing = true
		return io.EOF
	}
	if line != nil {
		f.cmdBuf = line[:0] // keep the grown buffer for the next command
	}
	f.cmdLine, f.cmdStr, f.hasStr = line, "", false
	if tooLong {
		f.cmd = ""
		f.reply(500, "5.2.3 line too long")
		return nil
	}
	if !utf8.Valid(line) {
		f.cmd = ""
		f.reply(501, "5.5.2 Invalid UTF-8 in command")
		return nil
	}
	if hasControl(line) {
		// A bare CR (or NUL, ESC, ...) is never part of a valid command,
		// and echoing it (EHLO's "Aloha <domain>") would break the reply.
		f.cmd = ""
		f.reply(501, "Syntax error in command or arguments: control character in command")
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
		if f.cmd = knownVerb(string(ub[:len(verb)])); f.cmd == "" {
			f.cmd = string(ub[:len(verb)])
		}
	} else {
		f.cmd = strings.ToUpper(string(verb))
	}
	switch f.cmd {
	case "EHLO", "HELO":
		return f.cmdHello(f.cmd, string(arg))
	case "MAIL":
		switch {
		case !f.ehloOK:
			f.reply(503, textEhloFirst)
		case f.hasMail:
			f.reply(503, "5.5.0 MAIL FROM already issued; you must RSET first")
		default:
			f.forward(line)
		}
	case "RCPT":
		if !f.hasMail {
			f.reply(503, "5.5.0 MAIL FROM must be issued first")
		} else {
			f.forward(line)
		}
	case "DATA":
		switch {
		case !f.hasMail || f.nrcpt == 0:
			f.reply(503, textRcptFirst)
		case len(arg) > 0:
			f.reply(501, "Syntax error in command or arguments: DATA takes no arguments")
		default:
			f.forward(line)
		}
	case "BDAT":
		f.cmdBDAT(line, arg)
	case "RSET":
		f.closeOpenBDAT()
		f.forward(line)
	case "QUIT":
		f.forward(line)
	case "NOOP":
		f.reply(250, "the goggles do nothing")
	case "STARTTLS":
		return f.cmdStartTLS()
	case "AUTH":
		f.cmdAuth(string(arg))
	case "XCLIENT":
		f.cmdXClient(string(arg))
	case "":
		f.reply(501, "Syntax error in command or arguments: empty command")
	default:
		f.reply(502, textUnimplemented)
	}
	return nil
}

// readLine reads a command line without its line ending, appending it to
// dst[:0]. Lines longer than line_length_hard_limit are consumed and
// reported as tooLong.
func (f *frontConn) readLine(dst []byte) ([]byte, bool, error) {
	limit := f.cfg.LineLengthHardLimit
	if limit <= 0 || limit > maxCommandLine {
		limit = maxCommandLine // a command line is never unbounded
	}
	var long []byte
	over := false
	for {
		chunk, err := f.rd.ReadSlice('\n')
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

// knownVerb returns the constant name of a command the front end handles,
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
func (f *frontConn) canonicalCommand() string {
	if knownVerb(f.cmd) == "" {
		return ""
	}
	_, arg, ok := strings.Cut(f.cmdString(), " ")
	if !ok {
		return f.cmd
	}
	arg = strings.TrimLeft(arg, " ")
	for _, kw := range [...]string{"FROM:", "TO:"} {
		if len(arg) >= len(kw) && strings.EqualFold(arg[:len(kw)], kw) {
			arg = kw + arg[len(kw):]
		}
	}
	return f.cmd + " " + arg
}

// cmdString returns the current command line as a string (converted once
// per command, only when a reply needs it).
func (f *frontConn) cmdString() string {
	if !f.hasStr {
		f.cmdStr, f.hasStr = string(f.cmdLine), true
	}
	return f.cmdStr
}

func (f *frontConn) forward(line []byte) {
	f.fwdBuf = append(append(f.fwdBuf[:0], f.pre...), line...)
	f.pre = nil
	f.fwdBuf = append(f.fwdBuf, '\r', '\n')
	f.fwd = f.fwdBuf
}

func (f *frontConn) cmdHello(verb, arg string) error {
	domain := arg
	if i := strings.IndexByte(domain, ' '); i >= 0 {
		domain = domain[:i]
	}
	if domain == "" {
		f.reply(501, "Syntax error in command or arguments: "+verb+" requires a domain")
		return nil
	}
	var exts []string
	if verb == "EHLO" {
		exts = f.defaultExtensions()
	}
	if f.s.hasEhlo {
		ctx, cancel := f.ctx()
		got, err := f.s.deps.Policy.Ehlo(ctx, domain, f.meta, exts)
		cancel()
		if err != nil {
			f.policyFailure(err)
			return nil
		}
		if got != nil && verb == "EHLO" {
			exts = got
		}
	}
	f.helo = domain
	f.pendExts = exts
	f.closeOpenBDAT()
	f.forward([]byte(verb + " " + domain))
	return nil
}

func (f *frontConn) cmdBDAT(line, arg []byte) {
	sizeArg, rest := nextField(arg)
	last, rest := nextField(rest)
	extra, _ := nextField(rest)
	if len(sizeArg) == 0 || len(extra) > 0 || (len(last) > 0 && !bytes.EqualFold(last, []byte("LAST"))) {
		f.reply(501, "Syntax error in command or arguments: BDAT <size> [LAST]")
		return
	}
	size, ok := parseChunkSize(sizeArg)
	if !ok {
		f.reply(501, "Syntax error in command or arguments: invalid BDAT size")
		return
	}
	if !f.hasMail || f.nrcpt == 0 {
		f.reply(503, textRcptFirst)
		f.skipBytes(int64(size))
		return
	}
	f.forward(line)
	f.mode = modeBDAT
	f.startBody()
	f.bdatLeft = int64(size)
	f.bdatOpen = len(last) == 0
}

// closeOpenBDAT prepares the end of a BDAT transaction that go-smtp holds
// open, ahead of a command that resets the transaction (RSET, EHLO, HELO,
// STARTTLS's synthetic RSET). go-smtp would abort it by closing the body's
// pipe without waiting for the goroutine reading it, and that goroutine's
// late result can then answer the next transaction's last chunk. So the
// transaction is closed the orderly way first: a synthetic "BDAT 0 LAST"
// (its reply dropped), whose Data returns at once because of bdatAbort.
func (f *frontConn) closeOpenBDAT() {
	if !f.bdatOpen {
		return
	}
	f.bdatOpen = false
	f.bdatAbort = true
	f.swallow++
	f.pre = bdatAbortLine
}

var bdatAbortLine = []byte("BDAT 0 LAST\r\n")

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
func (f *frontConn) skipBytes(n int64) {
	f.flush()
	f.raw.SetReadDeadline(time.Now().Add(f.cfg.ClientTimeout))
	if _, err := f.rd.Discard(int(n)); err != nil {
		f.closing = true
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
