package smtpd

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/memguard"
	"github.com/kumogo/kumogo/internal/message"
)

// maxCommandLine bounds a command line even when line_length_hard_limit is
// configured higher (or zero).
const maxCommandLine = 64 * 1024

const (
	modeCmd     = iota
	modeData    // a DATA body: read by Data through dataBody
	modeDataEnd // the body has been read: go-smtp reads the client's end line
)

// session is the one owner of a connection's state. go-smtp drives it
// twice over: as the net.Conn of its smtp.Conn (go-smtp reads command lines
// and bodies from it and writes its replies to it: conn.go, seam.go), and
// as the smtp.Session that go-smtp calls for MAIL, RCPT, DATA/BDAT and
// resets (transaction.go, data.go). go-smtp calls both from the
// connection's goroutine, except Data of a BDAT transaction, which it runs
// on a goroutine of its own while the connection's goroutine waits for it
// (that Data only returns what the session decided before: body.go).
//
// Its parts: the wire (socket, reader, replies not yet written), the
// command being answered, the transaction (txn), the body framing (scan,
// body clock) and per-session scratch reused from message to message.
type session struct {
	// wire
	s   *Server
	raw net.Conn
	cur net.Conn // raw, or a *tls.Conn after STARTTLS
	rd  *bufio.Reader
	out []byte // replies not yet written to the socket

	// the seam with go-smtp's replies (seam.go)
	partial   []byte // incomplete reply text written by go-smtp
	joined    []byte // scratch for multi-line replies (parseReply)
	decided   decision
	held      heldReply
	goReplies int // replies go-smtp wrote to the command being answered

	mode   int
	fwd    []byte // client bytes handed to go-smtp but not yet read by it
	fwdBuf []byte
	chunk  chunkReader // the BDAT chunk being read (body.go)
	// bdatEnd is the outcome of a BDAT transaction that the session
	// finished itself, for go-smtp's Data call on its empty last chunk
	// (data.go)
	bdatEnd error

	// body framing (body.go)
	scan      bodyScan
	bodyStart time.Time
	bodyBytes int64

	// the command being answered
	cmd     string // its verb
	cmdLine []byte // the whole client line (in cmdBuf)
	cmdBuf  []byte
	cmdStr  string // cmdLine as a string, made on first use (cmdString)
	hasStr  bool

	greeted bool
	ehloOK  bool
	closing bool
	closed  bool
	// ended: a 421 has been queued; nothing is said after it (go-smtp's
	// answer to the read error that follows, in particular)
	ended bool
	idle  atomic.Bool

	authFails int // failed AUTH attempts (max_auth_failures)
	rcptTotal int // recipients accepted on this connection

	client     // who the client is, and the listener configuration for it
	t      txn // the mail transaction (transaction.go)

	// listener-domain cache for the relay check (a few domains per session)
	ldCache map[string]*config.ListenerDomain

	// policy call context (callctx.go)
	call    *callCtx
	endCall context.CancelFunc
	inCall  bool
}

// client is what a session knows of its client: the facts that messages
// and records carry (receive.go, records.go) and the listener
// configuration chosen for it.
type client struct {
	// cfg is the listener configuration of this session: the listener's,
	// or a peer/via variant of it; tlsConf is its TLS configuration.
	cfg       *config.ESMTPListener
	tlsConf   *tls.Config
	meta      *message.ConnMeta
	peer      netip.AddrPort
	local     netip.AddrPort
	peerIP    string // peer address without port
	localIP   string
	sessionID string
	helo      string
	tls       *tls.ConnectionState
	tlsText   string // tlsInfo, once made
	authed    bool
}

func newSession(s *Server, c net.Conn) *session {
	ss := &session{s: s, raw: c, cur: c}
	ss.rd = bufio.NewReaderSize(c, 4096)
	ss.meta = message.NewConnMeta()
	if ra, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		ss.peer = ra.AddrPort()
	}
	if la, ok := c.LocalAddr().(*net.TCPAddr); ok {
		ss.local = la.AddrPort()
	}
	ss.peer = netip.AddrPortFrom(ss.peer.Addr().Unmap(), ss.peer.Port())
	ss.local = netip.AddrPortFrom(ss.local.Addr().Unmap(), ss.local.Port())
	ss.peerIP, ss.localIP = ss.peer.Addr().String(), ss.local.Addr().String()
	ss.sessionID = s.deps.IDs.NewString()
	ss.applyConfig()
	m := ss.meta
	m.Set("reception_protocol", "ESMTP")
	m.Set("received_via", ss.local.String())
	m.Set("received_from", ss.peer.String())
	s.track(ss, true)
	return ss
}

// applyConfig picks the listener configuration for the session's
// addresses (the peer and via blocks) and puts its hostname and meta into
// the connection meta.
func (ss *session) applyConfig() {
	ss.cfg, ss.tlsConf = ss.s.configFor(ss.peer.Addr(), ss.local.Addr())
	for k, v := range ss.cfg.Meta {
		ss.meta.Set(k, v)
	}
	ss.meta.Set("hostname", ss.cfg.Hostname)
}

func (ss *session) LocalAddr() net.Addr { return ss.raw.LocalAddr() }

func (ss *session) RemoteAddr() net.Addr { return ss.raw.RemoteAddr() }

func (ss *session) SetDeadline(t time.Time) error { return nil }

func (ss *session) SetReadDeadline(t time.Time) error { return nil }

func (ss *session) SetWriteDeadline(t time.Time) error { return nil }

func (ss *session) Close() error {
	if ss.closed {
		return nil
	}
	ss.closed = true
	ss.flush()
	ss.s.track(ss, false)
	ss.s.active.Add(-1)
	return ss.raw.Close()
}

// Read hands go-smtp the next command line, or body bytes while a DATA or
// BDAT body is being received.
func (ss *session) Read(p []byte) (int, error) {
	for {
		if len(ss.fwd) > 0 {
			n := copy(p, ss.fwd)
			ss.fwd = ss.fwd[n:]
			return n, nil
		}
		if ss.closing || ss.closed {
			ss.flush()
			return 0, io.EOF
		}
		switch ss.mode {
		case modeData:
			// go-smtp reads the body only if the session did not
			// (never, as Data is written): skip it the same way
			var scratch [512]byte
			for ss.mode == modeData {
				if _, err := (dataBody{ss}).Read(scratch[:]); err != nil && err != io.EOF {
					return 0, err
				}
			}
			continue
		case modeDataEnd:
			// the body was read by the one scanner (body.go), which left
			// the client's end-of-data line buffered: go-smtp's DATA
			// reader reads that line and nothing else
			ss.mode = modeCmd
			end, _ := ss.rd.Peek(len(endLine))
			ss.fwdBuf = append(ss.fwdBuf[:0], end...)
			ss.rd.Discard(len(end))
			ss.fwd = ss.fwdBuf
			continue
		}
		if err := ss.nextCommand(); err != nil {
			return 0, err
		}
	}
}

func (ss *session) host() string { return ss.cfg.Hostname }

func (ss *session) banner() {
	s := ss.s
	if ss.cfg.RequireProxyProtocol && !ss.readProxy() {
		ss.closing = true
		return
	}
	if s.shutting.Load() {
		ss.reply(421, textShuttingDown(ss.host()))
		return
	}
	if h := s.health.Load(); h != nil {
		if ok, reason := (*h)(); !ok {
			// KumoMTA's texts: memory over its limit, or storage that
			// does not take writes (below its floors, or failing)
			if reason == memguard.LoadShedding {
				s.log.Warn().Str("peer", ss.peer.String()).Msg("refusing session: memory over limit (load shedding)")
				ss.reply(421, textLoadShedding(ss.host()))
				return
			}
			s.log.Warn().Str("reason", reason).Str("peer", ss.peer.String()).Msg("refusing session: spool below its free-space floor")
			ss.reply(421, textDiskFull(ss.host()))
			return
		}
	}
	if s.hasConnAccepted {
		ctx, cancel := ss.ctx()
		err := s.deps.Policy.ConnectionAccepted(ctx, ss.meta)
		cancel()
		if err != nil {
			ss.answer(ss.policyReply(err))
			ss.closing = true
			return
		}
	}
	ss.reply(220, ss.host()+" "+ss.cfg.Banner)
}
