package smtpd

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"io"
	"math"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/logrecord"
	"github.com/kumogo/kumogo/internal/message"
	"github.com/kumogo/kumogo/internal/smtpreply"
)

// maxCommandLine bounds a command line even when line_length_hard_limit is
// configured higher (or zero).
const maxCommandLine = 64 * 1024

const (
	modeCmd     = iota
	modeData    // a DATA body: read by the session through dataBody
	modeDataEnd // the body has been read: go-smtp gets endOfData
	modeBDAT
)

// frontConn sits between the socket and go-smtp. go-smtp reads commands
// from it one line at a time and DATA/BDAT bodies up to their end, so the
// front end always knows which command a reply answers and never lets
// go-smtp read ahead into pipelined commands.
type frontConn struct {
	s   *Server
	raw net.Conn
	cur net.Conn // raw, or a *tls.Conn after STARTTLS
	rd  *bufio.Reader

	out     []byte // replies not yet written to the socket
	partial []byte // incomplete reply text written by go-smtp
	joined  []byte // scratch for multi-line replies (parseReply)

	mode     int
	fwd      []byte // bytes handed to go-smtp but not yet read by it
	fwdBuf   []byte
	bdatLeft int64
	discard  int64 // chunk bytes of a refused BDAT still to skip

	// body framing (body.go)
	scan      bodyScan
	dataNext  atomic.Bool // a 354 was sent: the next Data reads a DATA body
	bodyStart time.Time
	bodyBytes int64

	cmd     string // verb of the command being answered
	cmdLine []byte // the whole client line of that command (in cmdBuf)
	cmdBuf  []byte
	cmdStr  string // cmdLine as a string, made on first use (cmdString)
	hasStr  bool
	swallow int // go-smtp replies to drop (answers to synthetic commands)
	// bdatOpen: go-smtp holds a BDAT transaction open (chunks forwarded,
	// no LAST yet). bdatAbort tells Data that the synthetic LAST chunk
	// that closes it is an abort (see closeOpenBDAT). pre is forwarded
	// ahead of the next command.
	bdatOpen, bdatAbort bool
	pre                 []byte

	// cfg is the listener configuration of this session: the listener's,
	// or a peer/via variant of it; tlsConf is its TLS configuration.
	cfg     *config.ESMTPListener
	tlsConf *tls.Config

	// the Reception record, reused for every message (logReception)
	rec     logrecord.Record
	recPeer logrecord.PeerAddress

	greeted bool
	closing bool
	closed  bool
	// ended: a 421 has been queued; nothing is said after it (go-smtp's
	// answer to the read error that follows, in particular)
	ended bool
	idle  atomic.Bool

	// session state shared with the go-smtp session
	meta      *message.ConnMeta
	peer      netip.AddrPort
	local     netip.AddrPort
	peerIP    string // peer address without port
	localIP   string
	sessionID string
	helo      string
	ehloOK    bool
	pendExts  []string
	tls       *tls.ConnectionState
	tlsText   string // tlsInfo, once made
	authed    bool
	authFails int // failed AUTH attempts (max_auth_failures)
	hasMail   bool
	nrcpt     int
	rcptTotal int
	// "OK <sender>" and "OK <last accepted recipient>" of the current
	// transaction (empty outside one); the reply texts and the addresses
	// named in Rejection records.
	mailReply []byte
	rcptReply []byte
	closeMode smtpreply.DisconnectMode
	closeSet  bool

	// per-transaction scratch of receive (receive.go), kept for the next
	// transaction
	msgs      []*message.Message
	bufs      []*[]byte
	batches   [][]message.Address
	hdrBuf    []byte
	idsBuf    []byte
	dataReply []byte // the text of a successful DATA/BDAT reply
	dataOK    bool   // dataReply replaces go-smtp's "OK: queued"

	// policy call context (callctx.go)
	call    *callCtx
	endCall context.CancelFunc
	inCall  bool
}

func newFrontConn(s *Server, c net.Conn) *frontConn {
	fc := &frontConn{s: s, raw: c, cur: c}
	fc.rd = bufio.NewReaderSize(c, 4096)
	fc.meta = message.NewConnMeta()
	if ra, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		fc.peer = ra.AddrPort()
	}
	if la, ok := c.LocalAddr().(*net.TCPAddr); ok {
		fc.local = la.AddrPort()
	}
	fc.peer = netip.AddrPortFrom(fc.peer.Addr().Unmap(), fc.peer.Port())
	fc.local = netip.AddrPortFrom(fc.local.Addr().Unmap(), fc.local.Port())
	fc.peerIP, fc.localIP = fc.peer.Addr().String(), fc.local.Addr().String()
	fc.sessionID = s.deps.IDs.NewString()
	fc.applyConfig()
	m := fc.meta
	m.Set("reception_protocol", "ESMTP")
	m.Set("received_via", fc.local.String())
	m.Set("received_from", fc.peer.String())
	s.track(fc, true)
	return fc
}

// applyConfig picks the listener configuration for the session's
// addresses (the peer and via blocks) and puts its hostname and meta into
// the connection meta.
func (f *frontConn) applyConfig() {
	f.cfg, f.tlsConf = f.s.configFor(f.peer.Addr(), f.local.Addr())
	for k, v := range f.cfg.Meta {
		f.meta.Set(k, v)
	}
	f.meta.Set("hostname", f.cfg.Hostname)
}

// ---- net.Conn ----

func (f *frontConn) LocalAddr() net.Addr                { return f.raw.LocalAddr() }
func (f *frontConn) RemoteAddr() net.Addr               { return f.raw.RemoteAddr() }
func (f *frontConn) SetDeadline(t time.Time) error      { return nil }
func (f *frontConn) SetReadDeadline(t time.Time) error  { return nil }
func (f *frontConn) SetWriteDeadline(t time.Time) error { return nil }

func (f *frontConn) Close() error {
	if f.closed {
		return nil
	}
	f.closed = true
	f.flush()
	f.s.track(f, false)
	f.s.active.Add(-1)
	return f.raw.Close()
}

// Read hands go-smtp the next command line, or body bytes while a DATA or
// BDAT body is being received.
func (f *frontConn) Read(p []byte) (int, error) {
	for {
		if len(f.fwd) > 0 {
			n := copy(p, f.fwd)
			f.fwd = f.fwd[n:]
			return n, nil
		}
		if f.closing || f.closed {
			f.flush()
			return 0, io.EOF
		}
		switch f.mode {
		case modeData:
			// go-smtp reads the body only if the session did not
			// (never, as Data is written): skip it the same way
			var scratch [512]byte
			for f.mode == modeData {
				if _, err := (dataBody{f}).Read(scratch[:]); err != nil && err != io.EOF {
					return 0, err
				}
			}
			continue
		case modeDataEnd:
			// the body was read by the front end's scanner; go-smtp's
			// DATA reader needs only to see its end
			f.mode = modeCmd
			f.fwd = endOfData
			continue
		case modeBDAT:
			if f.bdatLeft == 0 {
				f.mode = modeCmd
				continue
			}
			return f.readBDAT(p)
		}
		if err := f.nextCommand(); err != nil {
			return 0, err
		}
	}
}

// Write receives go-smtp's replies; complete replies are translated and
// queued for the socket.
func (f *frontConn) Write(p []byte) (int, error) {
	if f.closed {
		return len(p), nil
	}
	f.partial = append(f.partial, p...)
	done := 0
	for {
		end, code, text, ok := parseReply(f.partial[done:], &f.joined)
		if !ok {
			break
		}
		done += end
		f.goReply(code, text)
	}
	// Keep the unparsed rest at the start of the same array: re-slicing
	// past the parsed replies would shrink the capacity at every reply
	// and make the next append allocate.
	f.partial = f.partial[:copy(f.partial, f.partial[done:])]
	return len(p), nil
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

// ---- replies ----

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

func (f *frontConn) host() string { return f.cfg.Hostname }

func (f *frontConn) technicalDifficulties(err error) {
	f.s.log.Error().Err(err).Str("peer", f.peer.String()).Str("command", f.cmd).Msg("policy error; ending session")
	f.reply(421, "4.3.0 "+f.host()+" technical difficulties")
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
				code, text = 421, "4.3.0 "+f.host()+" technical difficulties"
			case bytes.HasPrefix(raw, []byte("5.0.0 Error: transaction failed: ")):
				// go-smtp's text for an error that is not an SMTP reply:
				// Go error text (addresses included) never goes on the wire
				f.s.log.Error().Str("peer", f.peer.String()).Str("command", f.cmd).Str("error", string(raw)).Msg("transaction failed; ending session")
				code, text = 421, "4.3.0 "+f.host()+" technical difficulties"
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

func (f *frontConn) endTxn() {
	f.hasMail = false
	f.nrcpt = 0
	f.mailReply = f.mailReply[:0]
	f.rcptReply = f.rcptReply[:0]
}

func (f *frontConn) banner() {
	s := f.s
	if f.cfg.RequireProxyProtocol && !f.readProxy() {
		f.closing = true
		return
	}
	if s.shutting.Load() {
		f.reply(421, "4.3.2 "+f.host()+" shutting down")
		return
	}
	if h := s.health.Load(); h != nil {
		if ok, reason := (*h)(); !ok {
			s.log.Warn().Str("reason", reason).Str("peer", f.peer.String()).Msg("refusing session: spool below its free-space floor")
			f.reply(421, "4.3.2 "+f.host()+" disk is too full. Try later")
			return
		}
	}
	if s.hasConnAccepted {
		ctx, cancel := f.ctx()
		err := s.deps.Policy.ConnectionAccepted(ctx, f.meta)
		cancel()
		if err != nil {
			f.policyFailure(err)
			f.closing = true
			return
		}
	}
	f.reply(220, f.host()+" "+f.cfg.Banner)
}

// readProxy reads the PROXY protocol header that require_proxy_protocol
// demands before anything else on the connection. The addresses it names
// become the session's peer and local addresses (received_from and
// received_via; the connection's own ones are kept as orig_received_from
// and orig_received_via). It reports false, having logged why, when the
// connection does not start with a valid header and must be closed.
func (f *frontConn) readProxy() bool {
	f.raw.SetReadDeadline(time.Now().Add(f.cfg.ClientTimeout))
	h, err := readProxyHeader(f.rd)
	if err != nil {
		f.s.log.Warn().Err(err).Str("peer", f.peer.String()).Msg("closing connection: require_proxy_protocol is set and it did not start with a valid PROXY header")
		return false
	}
	if h.ok { // not UNKNOWN or LOCAL, where the connection's own addresses stand
		f.rebind(h.src, h.dst)
	}
	return true
}

// rebind makes peer and local the session's addresses (PROXY header,
// XCLIENT): received_from and received_via, the relay check, trace headers
// and records follow them; the connection's own are kept, once, as
// orig_received_from and orig_received_via.
func (f *frontConn) rebind(peer, local netip.AddrPort) {
	if _, ok := f.meta.Get("orig_received_from"); !ok {
		f.meta.Set("orig_received_from", f.peer.String())
		f.meta.Set("orig_received_via", f.local.String())
	}
	f.peer, f.local = peer, local
	f.peerIP, f.localIP = peer.Addr().String(), local.Addr().String()
	f.meta.Set("received_from", peer.String())
	f.meta.Set("received_via", local.String())
	f.applyConfig() // peer and via blocks follow the new addresses
}

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

// ---- commands ----

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
		f.reply(421, "4.3.2 "+f.host()+" shutting down")
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
				f.reply(421, "4.3.2 "+f.host()+" shutting down")
			} else {
				f.reply(421, "4.3.2 "+f.host()+" idle too long")
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
			f.reply(503, "5.5.1 EHLO or HELO must be issued first")
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
			f.reply(503, "5.5.0 RCPT TO must be issued first")
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
		f.reply(502, "5.5.1 Command unimplemented")
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
		f.reply(503, "5.5.0 RCPT TO must be issued first")
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

// ---- STARTTLS and AUTH ----

func (f *frontConn) cmdStartTLS() error {
	if f.tls != nil {
		f.reply(501, "Cannot STARTTLS as TLS is already active")
		return nil
	}
	if f.tlsConf == nil {
		f.reply(502, "5.5.1 Command unimplemented")
		return nil
	}
	f.reply(220, "Ready to Start TLS")
	f.flush()
	if f.closing {
		return io.EOF
	}
	// Anything pipelined after STARTTLS was sent in clear text: drop it.
	if n := f.rd.Buffered(); n > 0 {
		f.rd.Discard(n)
	}
	tc := tls.Server(f.raw, f.tlsConf)
	f.raw.SetDeadline(time.Now().Add(f.cfg.ClientTimeout))
	if err := tc.Handshake(); err != nil {
		f.s.log.Debug().Err(err).Str("peer", f.peer.String()).Msg("TLS handshake failed")
		f.closing = true
		return io.EOF
	}
	f.raw.SetWriteDeadline(time.Time{})
	st := tc.ConnectionState()
	f.tls = &st
	f.cur = tc
	f.rd.Reset(tc)
	f.meta.Set("tls_cipher", tls.CipherSuiteName(st.CipherSuite))
	f.meta.Set("tls_protocol_version", tls.VersionName(st.Version))
	if len(st.PeerCertificates) > 0 {
		f.meta.Set("tls_peer_subject_name", st.PeerCertificates[0].Subject.String())
	}
	// RFC 3207: forget the EHLO and any transaction.
	f.startOver()
	return nil
}

// startOver forgets the greeting and any transaction (after STARTTLS or
// XCLIENT): here, and in go-smtp with a synthetic RSET whose answer is
// dropped. The client has to say EHLO again.
func (f *frontConn) startOver() {
	f.ehloOK = false
	f.endTxn()
	f.closeOpenBDAT()
	f.cmd = "RSET"
	f.swallow++
	f.forward([]byte("RSET"))
}

func (f *frontConn) cmdAuth(arg string) {
	if f.tls == nil {
		f.reply(524, "5.7.11 AUTH requires an encrypted channel")
		return
	}
	if f.authed {
		f.reply(503, "5.5.1 AUTH me once, can't get authed again!")
		return
	}
	if !f.ehloOK {
		f.reply(503, "5.5.1 EHLO or HELO must be issued first")
		return
	}
	if f.hasMail {
		f.reply(503, "5.5.1 AUTH not permitted inside a transaction")
		return
	}
	mech, initial, _ := strings.Cut(arg, " ")
	if !strings.EqualFold(mech, "PLAIN") {
		f.reply(504, "5.5.4 AUTH "+mech+" not supported")
		return
	}
	resp := strings.TrimSpace(initial)
	if resp == "" {
		f.reply(334, "")
		f.flush()
		f.raw.SetReadDeadline(time.Now().Add(f.cfg.ClientTimeout))
		line, tooLong, err := f.readLine(nil)
		if err != nil || tooLong {
			f.closing = true
			return
		}
		resp = strings.TrimSpace(string(line))
	}
	if resp == "*" {
		f.reply(501, "5.5.0 AUTH cancelled by client")
		return
	}
	raw, err := base64.StdEncoding.DecodeString(resp)
	if resp == "=" {
		raw, err = nil, nil
	}
	parts := strings.Split(string(raw), "\x00")
	if err != nil || len(parts) != 3 {
		f.reply(501, "5.5.2 Invalid base64 or malformed PLAIN response")
		f.authFailed()
		return
	}
	authz, authc, pass := parts[0], parts[1], parts[2]
	if authz == "" {
		authz = authc
	}
	ok := false
	if f.s.hasAuth {
		ctx, cancel := f.ctx()
		ok, err = f.s.deps.Policy.AuthPlain(ctx, authz, authc, pass, f.meta)
		cancel()
		if err != nil {
			f.policyFailure(err)
			return
		}
	}
	if !ok {
		f.reply(535, "5.7.8 AUTH invalid")
		f.authFailed()
		return
	}
	f.authed = true
	f.meta.Set("authz_id", authz)
	f.meta.Set("authn_id", authc)
	f.reply(235, "2.7.0 AUTH OK")
}

// authFailed counts a failed AUTH attempt; at max_auth_failures the
// session ends with a 421, so that passwords cannot be guessed at the
// speed of the connection.
func (f *frontConn) authFailed() {
	f.authFails++
	max := f.cfg.MaxAuthFailures
	if max == 0 {
		max = config.DefaultMaxAuthFailures
	}
	if max > 0 && f.authFails >= max {
		f.s.log.Warn().Str("peer", f.peer.String()).Int("failures", f.authFails).Msg("too many failed AUTH attempts; closing the connection")
		f.reply(421, "4.7.0 "+f.host()+" too many failed authentication attempts")
	}
}

// tlsInfo renders "<version>:<cipher>" for the Received header (made
// once per session).
func (f *frontConn) tlsInfo() string {
	if f.tls == nil {
		return ""
	}
	if f.tlsText == "" {
		f.tlsText = tls.VersionName(f.tls.Version) + ":" + tls.CipherSuiteName(f.tls.CipherSuite)
	}
	return f.tlsText
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
