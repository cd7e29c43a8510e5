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
	"github.com/kumogo/kumogo/internal/logrecord"
	"github.com/kumogo/kumogo/internal/memguard"
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
	// reports is what the listener domains of the transaction say about
	// OOB and feedback reports (reports.go), set before receive
	reports reportPlan

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

func (f *frontConn) LocalAddr() net.Addr { return f.raw.LocalAddr() }

func (f *frontConn) RemoteAddr() net.Addr { return f.raw.RemoteAddr() }

func (f *frontConn) SetDeadline(t time.Time) error { return nil }

func (f *frontConn) SetReadDeadline(t time.Time) error { return nil }

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

func (f *frontConn) host() string { return f.cfg.Hostname }

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
		f.reply(421, textShuttingDown(f.host()))
		return
	}
	if h := s.health.Load(); h != nil {
		if ok, reason := (*h)(); !ok {
			// KumoMTA's texts: memory over its limit, or storage that
			// does not take writes (below its floors, or failing)
			if reason == memguard.LoadShedding {
				s.log.Warn().Str("peer", f.peer.String()).Msg("refusing session: memory over limit (load shedding)")
				f.reply(421, textLoadShedding(f.host()))
				return
			}
			s.log.Warn().Str("reason", reason).Str("peer", f.peer.String()).Msg("refusing session: spool below its free-space floor")
			f.reply(421, textDiskFull(f.host()))
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
