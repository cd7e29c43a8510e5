package egress

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/smtpreply"
	"github.com/kumogo/kumogo/queue/egress/mx"
)

// TLS modes of enable_tls.
const (
	TLSOpportunistic         = "Opportunistic"
	TLSOpportunisticInsecure = "OpportunisticInsecure"
	TLSRequired              = "Required"
	TLSRequiredInsecure      = "RequiredInsecure"
	TLSDisabled              = "Disabled"
)

// ErrUnusable is returned by Send on a session that an earlier failure (a
// broken connection, a timeout, a 421) or Close made unusable.
var ErrUnusable = errors.New("session is not usable")

// maxLine bounds one response line; maxLines one response.
const (
	maxLine  = 4096
	maxLines = 256
)

// quitTimeout bounds the polite QUIT of Close.
const quitTimeout = 2 * time.Second

// Dialer opens sessions. The zero value verifies peer certificates against
// the system roots.
type Dialer struct {
	// RootCAs verifies peer certificates for the Opportunistic and Required
	// modes; nil means the system roots.
	RootCAs *x509.CertPool
	// Hostname is the EHLO name of last resort (after the path's and the
	// source's ehlo_domain); "" means os.Hostname.
	Hostname string
	// TLSA gives the TLSA records of MX hosts for DANE (dane.go); nil
	// disables DANE.
	TLSA TLSASource
	// ProxyResolver resolves proxy servers named by host name (proxy.go);
	// nil allows IP literals only.
	ProxyResolver ProxyResolver
	// DANEResult, when set, counts each DANE decision by its result (the
	// DANE* constants; KumoMTA's dane_result_count metric).
	DANEResult func(result string)
}

// Session is one outbound SMTP connection after the greeting, EHLO and the
// optional STARTTLS and AUTH. A Session is used by one goroutine at a time;
// only Abort may be called concurrently.
type Session struct {
	id       string
	conn     net.Conn
	r        *bufio.Reader
	path     *config.EgressPath
	cand     mx.Candidate
	port     int
	local    netip.AddrPort
	ehloName string

	proxyServer   netip.AddrPort // zero for a direct connection
	proxyProtocol string         // ProxyHAProxy, ProxySOCKS5 or ""

	banner smtpreply.Response
	ehlo   smtpreply.Response
	ext    map[string]string // EHLO keyword (upper case) → parameters
	tls    *tls.ConnectionState

	cmdBuf []byte // pipelined command lines, reused

	txns   int
	broken bool
	closed bool
}

// Dial connects with the zero Dialer: see (*Dialer).Dial.
func Dial(ctx context.Context, cand mx.Candidate, p *config.EgressPath, src *config.EgressSource, ehloName string) (*Session, error) {
	var d Dialer
	return d.Dial(ctx, cand, p, src, ehloName)
}

// Dial connects to cand, reads the banner, says EHLO (HELO when EHLO is
// refused), upgrades with STARTTLS as p.EnableTLS says (then says EHLO
// again) and authenticates with AUTH PLAIN when p names a user.
//
// The port is src.RemotePort when set, else cand.Port, else p.SMTPPort. The
// local address is src.SourceAddress when set; a source with an HAProxy or
// SOCKS5 proxy connects through it (connectTransport). ehloName "" means p's
// ehlo_domain, then src's, then the Dialer's Hostname or the machine's.
// Every step has its own timeout from p (connect_timeout, banner_timeout,
// ehlo_timeout, starttls_timeout, auth_timeout); ctx bounds the whole.
//
// A refusal by the peer (non-2xx banner, EHLO and HELO refused, STARTTLS
// refused, AUTH refused, TLS required but not offered) is an *smtpreply.Error
// carrying the response; transport failures (connect, timeouts, TLS
// handshake) are plain errors. Either way the caller moves on to the next
// candidate; ResponseFor gives the response to record when none is left.
func (d *Dialer) Dial(ctx context.Context, cand mx.Candidate, p *config.EgressPath, src *config.EgressSource, ehloName string) (*Session, error) {
	return d.dial(ctx, cand, p, src, ehloName, p.EnableTLS)
}

// targetPort is the port Dial connects to: src.RemotePort when set, else
// cand.Port, else p.SMTPPort, else 25.
func targetPort(cand mx.Candidate, p *config.EgressPath, src *config.EgressSource) int {
	port := cand.Port
	if src != nil && src.RemotePort > 0 {
		port = src.RemotePort
	}
	if port == 0 {
		port = p.SMTPPort
	}
	if port == 0 {
		port = 25
	}
	return port
}

func (d *Dialer) dial(ctx context.Context, cand mx.Candidate, p *config.EgressPath, src *config.EgressSource, ehloName, tlsMode string) (*Session, error) {
	switch tlsMode {
	case "":
		tlsMode = TLSOpportunistic
	case TLSOpportunistic, TLSOpportunisticInsecure, TLSRequired, TLSRequiredInsecure, TLSDisabled:
	default:
		return nil, fmt.Errorf("egress: unknown enable_tls mode %q", tlsMode)
	}
	port := targetPort(cand, p, src)
	if ehloName == "" {
		ehloName = d.ehloName(p, src)
	}
	target := netip.AddrPortFrom(cand.Addr, uint16(port))

	t, err := connectTransport(ctx, d.ProxyResolver, target, p, src, cand.Name)
	if err != nil {
		return nil, err
	}
	conn := t.conn
	s := &Session{
		id:            newSessionID(),
		conn:          conn,
		r:             bufio.NewReaderSize(conn, maxLine),
		path:          p,
		cand:          cand,
		port:          port,
		local:         t.local,
		proxyServer:   t.proxyServer,
		proxyProtocol: t.proxyProtocol,
		ehloName:      ehloName,
	}
	if err := s.handshake(ctx, d, tlsMode); err != nil {
		s.Abort()
		return nil, err
	}
	return s, nil
}

func (d *Dialer) ehloName(p *config.EgressPath, src *config.EgressSource) string {
	switch {
	case p.EhloDomain != "":
		return p.EhloDomain
	case src != nil && src.EhloDomain != "":
		return src.EhloDomain
	case d.Hostname != "":
		return d.Hostname
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "localhost"
}

// ID is the session id for log records (a random UUID).
func (s *Session) ID() string { return s.id }

// Candidate is the host the session is connected to (with the port
// actually used).
func (s *Session) Candidate() mx.Candidate {
	c := s.cand
	c.Port = s.port
	return c
}

// PeerName is the host label for peer_address.name.
func (s *Session) PeerName() string { return s.cand.Name }

// PeerAddr is "ip:port" for peer_address.addr.
func (s *Session) PeerAddr() string { return netip.AddrPortFrom(s.cand.Addr, uint16(s.port)).String() }

// LocalAddr is the local address and port of the connection (the
// source_address of log records). Through a proxy it is the proxy's
// outbound address: what a SOCKS5 proxy reported, or the HAProxy source
// address with port 0.
func (s *Session) LocalAddr() netip.AddrPort { return s.local }

// Proxy is the proxy server and protocol ("haproxy", "socks5") the
// session goes through; protocol is "" for a direct connection.
func (s *Session) Proxy() (server netip.AddrPort, protocol string) {
	return s.proxyServer, s.proxyProtocol
}

// Banner is the peer's greeting.
func (s *Session) Banner() smtpreply.Response { return s.banner }

// EHLOResponse is the response to the last EHLO (or HELO).
func (s *Session) EHLOResponse() smtpreply.Response { return s.ehlo }

// Extension reports whether the peer advertised keyword (upper case) in
// its last EHLO response, and its parameters.
func (s *Session) Extension(keyword string) (params string, ok bool) {
	params, ok = s.ext[keyword]
	return params, ok
}

// TLS returns the TLS state, or nil for a clear-text session.
func (s *Session) TLS() *tls.ConnectionState { return s.tls }

// TLSVersion is the protocol version for tls_protocol_version ("TLSv1.3"),
// "" without TLS.
func (s *Session) TLSVersion() string {
	if s.tls == nil {
		return ""
	}
	return strings.Replace(tls.VersionName(s.tls.Version), "TLS ", "TLSv", 1)
}

// TLSCipher is the cipher suite name for tls_cipher, "" without TLS.
func (s *Session) TLSCipher() string {
	if s.tls == nil {
		return ""
	}
	return tls.CipherSuiteName(s.tls.CipherSuite)
}

// TLSPeerSubject is the subject of the peer's certificate for
// tls_peer_subject_name, "" when there is none.
func (s *Session) TLSPeerSubject() string {
	if s.tls == nil || len(s.tls.PeerCertificates) == 0 {
		return ""
	}
	return s.tls.PeerCertificates[0].Subject.String()
}

// Transactions counts the transactions Send started on this session.
func (s *Session) Transactions() int { return s.txns }

// Usable reports whether another transaction may be sent: false after a
// transport error, a timeout, a 421 response, a failed RSET or Close.
func (s *Session) Usable() bool { return !s.broken && !s.closed }

// Close says QUIT (when the session is still usable) with a short timeout
// and closes the connection. It is safe to call more than once.
func (s *Session) Close() error {
	if s.closed {
		return nil
	}
	if !s.broken {
		ctx, cancel := context.WithTimeout(context.Background(), quitTimeout)
		s.quit(ctx)
		cancel()
	}
	s.closed = true
	err := s.conn.Close()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// Abort closes the connection at once without QUIT. It may be called from
// any goroutine, for example at shutdown while Send is blocked.
func (s *Session) Abort() {
	_ = s.conn.Close()
}

// quit sends QUIT and waits briefly for the answer; errors are ignored.
func (s *Session) quit(ctx context.Context) {
	if s.broken {
		return
	}
	t := min(quitTimeout, s.path.RsetTimeout)
	if t <= 0 {
		t = quitTimeout
	}
	_, _ = s.roundTrip(ctx, "QUIT\r\n", t)
	s.broken = true
}

func (s *Session) peer() string {
	return s.cand.Name + " " + netip.AddrPortFrom(s.cand.Addr, uint16(s.port)).String()
}

func (s *Session) annotate(what string, err error) error {
	return fmt.Errorf("egress: %s %s: %w", what, s.peer(), err)
}
