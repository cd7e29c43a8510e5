package smtpd

import (
	"errors"
	"io"
	"strings"
	"sync"

	smtp "github.com/emersion/go-smtp"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/message"
	"github.com/kumogo/kumogo/internal/smtpreply"
)

// session is the go-smtp Session of one connection. go-smtp calls it from
// the connection's goroutine only, so it shares state with its frontConn
// without locking.
type session struct {
	fc    *frontConn
	s     *Server
	from  message.Address
	rcpts []message.Address
	// listener-domain cache for the relay check (a few domains per session)
	ldCache map[string]*config.ListenerDomain
}

var _ smtp.Session = (*session)(nil)

func reply(code int, text string) *smtp.SMTPError {
	return &smtp.SMTPError{Code: code, EnhancedCode: smtp.NoEnhancedCode, Message: text}
}

// policyErr turns a policy event's error into the reply go-smtp writes,
// remembering a disconnect the policy asked for.
func (ss *session) policyErr(err error) error {
	var rej *smtpreply.Rejection
	if errors.As(err, &rej) {
		if rej.Mode != smtpreply.If421 {
			ss.fc.closeSet, ss.fc.closeMode = true, rej.Mode
		}
		return reply(rej.Code, rej.Text)
	}
	ss.s.log.Error().Err(err).Str("peer", ss.fc.peer.String()).Str("command", ss.fc.cmd).Msg("policy error; ending session")
	return reply(421, textTechnicalDifficulties(ss.fc.host()))
}

func (ss *session) Reset() {
	ss.from = message.Address{}
	ss.rcpts = ss.rcpts[:0]
}

func (ss *session) Logout() error { return nil }

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	addr, err := message.ParseAddress(from)
	if err != nil {
		return reply(501, "5.1.7 Invalid sender address syntax: "+from)
	}
	if ss.s.hasMail {
		ctx, cancel := ss.fc.ctx()
		err = ss.s.deps.Policy.MailFrom(ctx, addr, ss.fc.meta)
		cancel()
		if err != nil {
			return ss.policyErr(err)
		}
	}
	ss.from = addr
	ss.fc.mailReply = addr.AppendTo(append(ss.fc.mailReply[:0], "OK "...))
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	fc, cfg := ss.fc, ss.fc.cfg
	addr, err := message.ParseAddress(to)
	postmaster := err != nil && strings.EqualFold(to, "postmaster")
	if postmaster {
		// RFC 5321 section 4.5.1: <postmaster> without a domain must be
		// accepted. As KumoMTA's EnvelopeAddress::Postmaster, its user is
		// "postmaster" and its domain empty; it names this host, so it is
		// not relaying, and smtp_server_rcpt_to decides like for any
		// other recipient.
		addr, err = message.Address{User: "postmaster"}, nil
	}
	if err != nil || addr.IsNull() {
		return reply(501, "5.1.3 Invalid recipient address syntax")
	}
	ok := postmaster
	if !ok {
		ok, err = ss.relayAllowed(addr)
		if err != nil {
			return ss.policyErr(err)
		}
	}
	if !ok {
		return reply(550, "5.7.1 relaying not permitted for "+fc.peer.String())
	}
	if cfg.MaxRecipientsPerMessage > 0 && len(ss.rcpts) >= cfg.MaxRecipientsPerMessage {
		return reply(452, "4.5.3 too many recipients")
	}
	if cfg.MaxMessagesPerConnection > 0 && fc.rcptTotal >= cfg.MaxMessagesPerConnection {
		if len(ss.rcpts) == 0 {
			return reply(421, "4.5.3 "+fc.host()+" too many recipients on this connection")
		}
		return reply(452, "4.5.3 too many recipients on this connection")
	}
	if ss.s.hasRcpt {
		ctx, cancel := fc.ctx()
		err = ss.s.deps.Policy.RcptTo(ctx, addr, fc.meta)
		cancel()
		if err != nil {
			return ss.policyErr(err)
		}
	}
	ss.rcpts = append(ss.rcpts, addr)
	fc.rcptReply = addr.AppendTo(append(fc.rcptReply[:0], "OK "...))
	return nil
}

// relayAllowed applies KumoMTA's relay rule: the peer is in relay_hosts, or
// the sender domain's listener domain lists the peer in relay_from, or the
// recipient domain's listener domain has relay_to (or OOB/ARF logging).
func (ss *session) relayAllowed(rcpt message.Address) (bool, error) {
	peer := ss.fc.peer.Addr()
	if ss.fc.cfg.RelayHosts.Contains(peer) {
		return true, nil
	}
	if !ss.s.hasListenerDomain {
		return false, nil
	}
	if !ss.from.IsNull() {
		ld, err := ss.listenerDomain(ss.from.Domain)
		if err != nil {
			return false, err
		}
		if ld != nil && ld.RelayFrom.Contains(peer) {
			return true, nil
		}
	}
	ld, err := ss.listenerDomain(rcpt.Domain)
	if err != nil {
		return false, err
	}
	if ld != nil && (ld.RelayTo || (ld.LogOOB != "" && ld.LogOOB != "Ignore") || (ld.LogARF != "" && ld.LogARF != "Ignore")) {
		return true, nil
	}
	return false, nil
}

func (ss *session) listenerDomain(domain string) (*config.ListenerDomain, error) {
	domain = strings.ToLower(domain)
	if ld, ok := ss.ldCache[domain]; ok {
		return ld, nil
	}
	ctx, cancel := ss.fc.ctx()
	ld, err := ss.s.deps.Policy.ListenerDomain(ctx, domain, ss.fc.local.String(), ss.fc.meta)
	cancel()
	if err != nil {
		return nil, err
	}
	if ss.ldCache == nil {
		ss.ldCache = make(map[string]*config.ListenerDomain, 4)
	} else if len(ss.ldCache) >= 16 {
		clear(ss.ldCache)
	}
	ss.ldCache[domain] = ld
	return ld, nil
}

// Body buffers come from two pools: every message starts in a small buffer
// and moves to a large one only when it outgrows it, so that thousands of
// sessions sending small messages do not each pin a large buffer. Each
// buffer keeps message.Headroom spare bytes in front for trace headers.
const (
	smallBuf = 16*1024 + message.Headroom
	largeBuf = 128*1024 + message.Headroom
)

var (
	smallPool = sync.Pool{New: func() any { b := make([]byte, 0, smallBuf); return &b }}
	largePool = sync.Pool{New: func() any { b := make([]byte, 0, largeBuf); return &b }}
)

func getBuf() *[]byte {
	bp := smallPool.Get().(*[]byte)
	*bp = (*bp)[:message.Headroom]
	return bp
}

// growBuf moves the contents of *bp into a large pooled buffer (or grows
// it by appending once it is large already).
func growBuf(bp *[]byte) {
	if cap(*bp) < largeBuf {
		lp := largePool.Get().(*[]byte)
		small := *bp
		*bp = append((*lp)[:0], small...)
		*lp = small[:0] // lp's box now carries the small buffer back
		smallPool.Put(lp)
		return
	}
	*bp = append(*bp, 0)[:len(*bp)]
}

func putBuf(bp *[]byte) {
	switch c := cap(*bp); {
	case c > 4<<20:
		// do not pin huge buffers
	case c >= largeBuf:
		largePool.Put(bp)
	case c >= smallBuf:
		smallPool.Put(bp)
	}
}

// errBDATAborted ends the Data of a BDAT transaction the front end closes
// before a reset; its reply is dropped.
var errBDATAborted = errors.New("smtpd: BDAT transaction aborted by the client")

func (ss *session) Data(r io.Reader) error {
	fc, cfg := ss.fc, ss.fc.cfg
	// A DATA body is read through the front end's scanner, never through
	// go-smtp's reader (body.go); a BDAT chunk is forwarded as counted.
	// (Data of a BDAT transaction runs on a goroutine of go-smtp's, hence
	// the atomic flag set by the 354 rather than a look at fc.mode.)
	isData := fc.dataNext.CompareAndSwap(true, false)
	if isData {
		r = dataBody{fc}
	}
	// the body's share of the listener's memory budget (budget.go)
	res := bodyReservation{b: ss.s.budget}
	defer res.done()
	if !res.ensure(firstReserve, cfg.ClientTimeout) {
		return ss.noMemory(r)
	}
	bp := getBuf()
	buf := *bp
	max := cfg.MaxMessageSize
	tooBig := false
	for {
		if len(buf) == cap(buf) {
			next := int64(largeBuf)
			if cap(buf) >= largeBuf {
				next = 2 * int64(cap(buf))
			}
			if max > 0 && next > max+largeBuf {
				next = max + largeBuf
			}
			if !res.ensure(next, growWait) {
				*bp = buf
				putBuf(bp)
				return ss.noMemory(r)
			}
			*bp = buf
			growBuf(bp)
			buf = *bp
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if max > 0 && int64(len(buf)-message.Headroom) > max {
			tooBig = true
			if _, err := io.Copy(io.Discard, r); err != nil {
				*bp = buf
				putBuf(bp)
				return errBodyRead
			}
			break
		}
		if err == io.EOF {
			break
		}
		if errors.Is(err, smtp.ErrDataReset) {
			// RSET or a closed connection aborted a BDAT body. go-smtp
			// runs this reader in a goroutine of its own and does not
			// wait for it, so the session's state is not touched here:
			// the session carries on (or ends) without us.
			*bp = buf
			putBuf(bp)
			return err
		}
		if err != nil {
			// the front end has answered the client (or the connection
			// is gone); nothing more is said
			*bp = buf
			putBuf(bp)
			return errBodyRead
		}
	}
	*bp = buf
	if fc.bdatAbort {
		// the front end's synthetic last chunk closing an aborted BDAT
		// transaction (closeOpenBDAT): nothing was received
		fc.bdatAbort = false
		putBuf(bp)
		return errBDATAborted
	}
	if tooBig {
		putBuf(bp)
		return reply(552, "5.3.4 message too big")
	}
	tooLong, badEnding := fc.scan.tooLong, fc.scan.badEnding
	if !isData {
		// a BDAT body is held to the same rules as a DATA body, so that
		// what is spooled does not depend on how it was sent
		tooLong, badEnding = checkLines(buf[message.Headroom:], cfg.LineLengthHardLimit)
	}
	if tooLong {
		putBuf(bp)
		return reply(500, "5.2.3 line too long")
	}
	if badEnding {
		switch cfg.InvalidLineEndings {
		case "Allow":
		case "Fix":
			fixed := fixLineEndings(buf[message.Headroom:])
			buf = append(buf[:message.Headroom], fixed...)
			*bp = buf
		default:
			putBuf(bp)
			return reply(552, "5.6.0 message data must use CRLF for line endings")
		}
	}
	plan, err := ss.planReports()
	if err != nil {
		putBuf(bp)
		return ss.policyErr(err)
	}
	fc.reports = plan
	ctx, cancel := fc.ctx()
	defer cancel()
	err = ss.s.receive(ctx, fc, ss.from, ss.rcpts, bp)
	return err
}

// noMemory answers a body for which the listener's memory budget had no
// room within client_timeout: the rest of it is read and dropped, and the
// client is told to try again later.
func (ss *session) noMemory(r io.Reader) error {
	ss.s.log.Warn().Str("peer", ss.fc.peer.String()).Msg("the memory budget of bodies being received is spent; message refused with 451")
	if _, err := io.Copy(io.Discard, r); err != nil {
		if errors.Is(err, smtp.ErrDataReset) {
			return err
		}
		return errBodyRead
	}
	if ss.fc.bdatAbort {
		ss.fc.bdatAbort = false // see Data
		return errBDATAborted
	}
	return reply(451, "4.3.1 "+ss.fc.host()+" too many messages being received. Try later")
}

// fixLineEndings turns bare CR and bare LF into CRLF.
func fixLineEndings(b []byte) []byte {
	out := make([]byte, 0, len(b)+len(b)/64)
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case c == '\r' && i+1 < len(b) && b[i+1] == '\n':
			out = append(out, '\r', '\n')
			i++
		case c == '\r' || c == '\n':
			out = append(out, '\r', '\n')
		default:
			out = append(out, c)
		}
	}
	return out
}
