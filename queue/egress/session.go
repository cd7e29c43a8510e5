package egress

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/kumogo/kumogo/internal/config"
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
	// STS gives the MTA-STS policies of recipient domains (mtasts.go);
	// nil disables MTA-STS.
	STS PolicySource
}

// Session is one outbound SMTP connection after the greeting, EHLO and the
// optional STARTTLS and AUTH. A Session is used by one goroutine at a time;
// only Abort may be called concurrently.
type Session struct {
	id       string
	conn     net.Conn
	r        *bufio.Reader
	w        *bufio.Writer
	path     *config.EgressPath
	cand     mx.Candidate
	port     int
	local    netip.AddrPort
	ehloName string

	banner Response
	ehlo   Response
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
// local address is src.SourceAddress when set. ehloName "" means p's
// ehlo_domain, then src's, then the Dialer's Hostname or the machine's.
// Every step has its own timeout from p (connect_timeout, banner_timeout,
// ehlo_timeout, starttls_timeout, auth_timeout); ctx bounds the whole.
//
// A refusal by the peer (non-2xx banner, EHLO and HELO refused, STARTTLS
// refused, AUTH refused, TLS required but not offered) is an *Error
// carrying the response; transport failures (connect, timeouts, TLS
// handshake) are plain errors. Either way the caller moves on to the next
// candidate; ResponseFor gives the response to record when none is left.
func (d *Dialer) Dial(ctx context.Context, cand mx.Candidate, p *config.EgressPath, src *config.EgressSource, ehloName string) (*Session, error) {
	return d.dial(ctx, cand, p, src, ehloName, p.EnableTLS)
}

func (d *Dialer) dial(ctx context.Context, cand mx.Candidate, p *config.EgressPath, src *config.EgressSource, ehloName, tlsMode string) (*Session, error) {
	switch tlsMode {
	case "":
		tlsMode = TLSOpportunistic
	case TLSOpportunistic, TLSOpportunisticInsecure, TLSRequired, TLSRequiredInsecure, TLSDisabled:
	default:
		return nil, fmt.Errorf("egress: unknown enable_tls mode %q", tlsMode)
	}
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
	if ehloName == "" {
		ehloName = d.ehloName(p, src)
	}
	target := netip.AddrPortFrom(cand.Addr, uint16(port))

	nd := net.Dialer{Timeout: p.ConnectTimeout}
	if src != nil && src.SourceAddress != "" {
		a, err := netip.ParseAddr(strings.Trim(src.SourceAddress, "[]"))
		if err != nil {
			return nil, fmt.Errorf("egress: source %q: invalid source_address %q", src.Name, src.SourceAddress)
		}
		nd.LocalAddr = &net.TCPAddr{IP: a.AsSlice(), Zone: a.Zone()}
	}
	conn, err := nd.DialContext(ctx, "tcp", target.String())
	if err != nil {
		return nil, fmt.Errorf("egress: connect to %s %s: %w", cand.Name, target, err)
	}
	s := &Session{
		id:       newSessionID(),
		conn:     conn,
		r:        bufio.NewReaderSize(conn, maxLine),
		w:        bufio.NewWriterSize(conn, 16<<10),
		path:     p,
		cand:     cand,
		port:     port,
		ehloName: ehloName,
	}
	if la, ok := conn.LocalAddr().(*net.TCPAddr); ok {
		s.local = la.AddrPort()
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

func (s *Session) handshake(ctx context.Context, d *Dialer, tlsMode string) error {
	defer s.watch(ctx)()
	banner, err := s.read(ctx, "", s.path.BannerTimeout)
	if err != nil {
		return s.annotate("reading banner", err)
	}
	s.banner = banner
	if banner.Code < 200 || banner.Code >= 300 {
		s.quit(ctx)
		return &Error{Response: banner}
	}
	if err := s.hello(ctx); err != nil {
		return err
	}
	_, offered := s.ext["STARTTLS"]
	switch tlsMode {
	case TLSRequired, TLSRequiredInsecure:
		if !offered {
			s.quit(ctx)
			return &Error{Response: Response{Code: 400, Content: fmt.Sprintf(
				"KumoMTA internal: tls policy is %s but STARTTLS is not advertised by %s", tlsMode, s.peer())}}
		}
	case TLSDisabled:
		offered = false
	}
	if offered {
		insecure := tlsMode == TLSOpportunisticInsecure || tlsMode == TLSRequiredInsecure
		if err := s.starttls(ctx, d, insecure); err != nil {
			return err
		}
		if err := s.hello(ctx); err != nil {
			return err
		}
	}
	if s.path.SMTPAuthPlainUsername != "" {
		if err := s.auth(ctx); err != nil {
			return err
		}
	}
	return nil
}

// hello says EHLO, falling back to HELO when the peer refuses EHLO with a
// 5xx.
func (s *Session) hello(ctx context.Context) error {
	cmd := "EHLO " + s.ehloName + "\r\n"
	resp, err := s.roundTrip(ctx, cmd, s.path.EhloTimeout)
	if err != nil {
		return s.annotate("EHLO", err)
	}
	if resp.Code == 250 {
		s.ehlo = resp
		s.ext = parseExtensions(resp.Content)
		return nil
	}
	if resp.Code >= 500 && resp.Code < 600 {
		cmd = "HELO " + s.ehloName + "\r\n"
		hresp, err := s.roundTrip(ctx, cmd, s.path.EhloTimeout)
		if err != nil {
			return s.annotate("HELO", err)
		}
		if hresp.Code == 250 {
			s.ehlo = hresp
			s.ext = map[string]string{}
			return nil
		}
		resp = hresp
	}
	s.quit(ctx)
	return &Error{Response: resp}
}

// parseExtensions reads the keywords of an EHLO response (every line after
// the first; the enhanced-code stripping never applies to EHLO lines).
func parseExtensions(content string) map[string]string {
	ext := make(map[string]string)
	lines := strings.Split(content, "\n")
	for _, l := range lines[1:] {
		kw, params, _ := strings.Cut(strings.TrimSpace(l), " ")
		if kw != "" {
			ext[strings.ToUpper(kw)] = params
		}
	}
	return ext
}

func (s *Session) starttls(ctx context.Context, d *Dialer, insecure bool) error {
	resp, err := s.roundTrip(ctx, "STARTTLS\r\n", s.path.StartTLSTimeout)
	if err != nil {
		return s.annotate("STARTTLS", err)
	}
	if resp.Code != 220 {
		s.quit(ctx)
		return &Error{Response: resp}
	}
	cfg := &tls.Config{
		ServerName:         strings.TrimSuffix(s.cand.Name, "."),
		InsecureSkipVerify: insecure,
		RootCAs:            d.RootCAs,
	}
	if cfg.ServerName == "" {
		// Verified against the certificate's IP addresses; no SNI is sent.
		cfg.ServerName = s.cand.Addr.String()
	}
	if !s.path.TLSCertificate.IsZero() || !s.path.TLSPrivateKey.IsZero() {
		cert, err := loadKeyPair(s.path.TLSCertificate, s.path.TLSPrivateKey)
		if err != nil {
			return fmt.Errorf("egress: client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	tc := tls.Client(s.conn, cfg)
	hctx, cancel := context.WithTimeout(ctx, s.path.StartTLSTimeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		s.broken = true
		return &tlsHandshakeError{fmt.Errorf("egress: TLS handshake with %s failed: %w", s.peer(), err)}
	}
	st := tc.ConnectionState()
	s.tls = &st
	s.conn = tc
	s.r.Reset(tc)
	s.w.Reset(tc)
	return nil
}

// tlsHandshakeError marks failed handshakes, after which Connect may
// reconnect without TLS (opportunistic_tls_reconnect_on_failed_handshake).
type tlsHandshakeError struct{ error }

func (e *tlsHandshakeError) Unwrap() error { return e.error }

func loadKeyPair(certSrc, keySrc config.KeySource) (tls.Certificate, error) {
	certPEM, err := certSrc.Read()
	if err != nil {
		return tls.Certificate{}, err
	}
	keyPEM, err := keySrc.Read()
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(certPEM, keyPEM)
}

func (s *Session) auth(ctx context.Context) error {
	p := s.path
	if s.tls == nil && !p.AllowSMTPAuthPlainWithoutTLS {
		s.quit(ctx)
		return &Error{Response: Response{Code: 400, Content: fmt.Sprintf(
			"KumoMTA internal: TLS is not enabled and AUTH PLAIN is required. Skipping (%s)", s.peer())}}
	}
	var password []byte
	if !p.SMTPAuthPlainPassword.IsZero() {
		pw, err := p.SMTPAuthPlainPassword.Read()
		if err != nil {
			return fmt.Errorf("egress: smtp_auth_plain_password: %w", err)
		}
		password = pw
	}
	raw := make([]byte, 0, 2+len(p.SMTPAuthPlainUsername)+len(password))
	raw = append(raw, 0)
	raw = append(raw, p.SMTPAuthPlainUsername...)
	raw = append(raw, 0)
	raw = append(raw, password...)
	resp, err := s.roundTrip(ctx, "AUTH PLAIN "+base64.StdEncoding.EncodeToString(raw)+"\r\n", p.AuthTimeout)
	if err != nil {
		return s.annotate("AUTH", err)
	}
	if resp.Code != 235 {
		s.quit(ctx)
		return &Error{Response: resp}
	}
	return nil
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
// source_address of log records).
func (s *Session) LocalAddr() netip.AddrPort { return s.local }

// Banner is the peer's greeting.
func (s *Session) Banner() Response { return s.banner }

// EHLOResponse is the response to the last EHLO (or HELO).
func (s *Session) EHLOResponse() Response { return s.ehlo }

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

// ---- wire helpers ----

// ioError is a transport failure of one command: a broken connection or a
// timeout. The session is unusable afterwards.
type ioError struct {
	cmd     string        // the command line (with CRLF) or "" for the banner
	write   bool          // failed while writing
	timeout time.Duration // > 0 when the deadline passed
	err     error
}

func (e *ioError) Error() string {
	cmd := strings.TrimRight(e.cmd, "\r\n")
	if e.timeout > 0 {
		if e.write {
			return fmt.Sprintf("Timed Out writing %s %q", fmtDuration(e.timeout), cmd)
		}
		if e.cmd == "" {
			return fmt.Sprintf("Timed Out waiting %s for response", fmtDuration(e.timeout))
		}
		return fmt.Sprintf("Timed Out waiting %s for response to %q", fmtDuration(e.timeout), cmd)
	}
	return e.err.Error()
}

func (e *ioError) Unwrap() error { return e.err }

// response is the synthetic response recorded for a transport failure
// (reference §5.5): 421 4.4.2 for timeouts, 400 otherwise.
func (e *ioError) response() Response {
	if e.timeout > 0 {
		return Response{Code: 421, Enhanced: enh(4, 4, 2), Content: textSendFailed + e.Error(), Command: e.cmd}
	}
	return Response{Code: 400, Content: textSendFailed + e.Error()}
}

// fmtDuration renders like Rust's Duration debug form for whole seconds
// ("300s") and like Go otherwise ("250ms").
func fmtDuration(d time.Duration) string {
	if d%time.Second == 0 {
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	}
	return d.String()
}

var longAgo = time.Unix(1, 0)

// watch makes ctx's end interrupt blocked reads and writes. The returned
// function stops watching.
func (s *Session) watch(ctx context.Context) func() {
	if ctx.Done() == nil {
		return func() {}
	}
	conn := s.conn
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(longAgo) })
	return func() { stop() }
}

// deadline sets the read or write deadline and fails if ctx already ended
// (the watcher may have fired before the deadline was set).
func (s *Session) deadline(ctx context.Context, write bool, d time.Duration) error {
	var t time.Time
	if d > 0 {
		t = time.Now().Add(d)
	}
	var err error
	if write {
		err = s.conn.SetWriteDeadline(t)
	} else {
		err = s.conn.SetReadDeadline(t)
	}
	if err != nil {
		return err
	}
	return ctx.Err()
}

// fail wraps a transport error of cmd and marks the session broken.
func (s *Session) fail(ctx context.Context, cmd string, write bool, timeout time.Duration, err error) error {
	s.broken = true
	e := &ioError{cmd: cmd, write: write, err: err}
	if ce := ctx.Err(); ce != nil {
		e.err = ce
		return e
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		e.timeout = timeout
	}
	return e
}

// flush writes the buffered commands within timeout.
func (s *Session) flush(ctx context.Context, cmds string, timeout time.Duration) error {
	if err := s.deadline(ctx, true, timeout); err != nil {
		return s.fail(ctx, cmds, true, timeout, err)
	}
	if err := s.w.Flush(); err != nil {
		return s.fail(ctx, cmds, true, timeout, err)
	}
	return nil
}

// roundTrip writes one command and reads its response.
func (s *Session) roundTrip(ctx context.Context, cmd string, timeout time.Duration) (Response, error) {
	_, _ = s.w.WriteString(cmd)
	if err := s.flush(ctx, cmd, timeout); err != nil {
		return Response{}, err
	}
	return s.read(ctx, cmd, timeout)
}

// read reads one complete response to cmd within timeout. A 421 marks the
// session unusable.
func (s *Session) read(ctx context.Context, cmd string, timeout time.Duration) (Response, error) {
	if err := s.deadline(ctx, false, timeout); err != nil {
		return Response{}, s.fail(ctx, cmd, false, timeout, err)
	}
	resp := Response{Command: cmd}
	var content strings.Builder
	for n := 0; ; n++ {
		line, err := s.r.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				return Response{}, s.fail(ctx, cmd, false, timeout, errors.New("response line is too long"))
			}
			if errors.Is(err, io.EOF) {
				err = errors.New("connection closed by peer")
			}
			return Response{}, s.fail(ctx, cmd, false, timeout, err)
		}
		line = trimCRLF(line)
		code, more, text, ok := parseLine(line)
		if !ok || (n > 0 && code != resp.Code) {
			return Response{}, s.fail(ctx, cmd, false, timeout, fmt.Errorf("malformed response line %q", line))
		}
		if n == 0 {
			resp.Code = code
			if e, rest, ok := splitEnhanced(text, code); ok {
				resp.Enhanced, text = e, rest
			}
		} else {
			content.WriteByte('\n')
			if resp.Enhanced != nil {
				if e, rest, ok := splitEnhanced(text, code); ok && *e == *resp.Enhanced {
					text = rest
				}
			}
		}
		content.WriteString(text)
		if !more {
			break
		}
		if n+1 >= maxLines {
			return Response{}, s.fail(ctx, cmd, false, timeout, errors.New("response has too many lines"))
		}
	}
	resp.Content = content.String()
	if resp.Code == 421 {
		s.broken = true
	}
	return resp, nil
}

func trimCRLF(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
	}
	if n := len(b); n > 0 && b[n-1] == '\r' {
		b = b[:n-1]
	}
	return b
}

// parseLine splits "NNN-text", "NNN text" or "NNN".
func parseLine(line []byte) (code int, more bool, text string, ok bool) {
	if len(line) < 3 {
		return 0, false, "", false
	}
	for i := 0; i < 3; i++ {
		c := line[i]
		if c < '0' || c > '9' {
			return 0, false, "", false
		}
		code = code*10 + int(c-'0')
	}
	if code < 100 {
		return 0, false, "", false
	}
	if len(line) == 3 {
		return code, false, "", true
	}
	switch line[3] {
	case ' ':
	case '-':
		more = true
	default:
		return 0, false, "", false
	}
	return code, more, string(line[4:]), true
}

func newSessionID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var out [36]byte
	hex.Encode(out[0:8], b[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], b[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], b[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], b[8:10])
	out[23] = '-'
	hex.Encode(out[24:], b[10:])
	return string(out[:])
}
