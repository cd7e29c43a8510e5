package egress

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/queue/egress/mx"
)

// fakePeer is a scripted SMTP server on 127.0.0.1 that records what it
// receives. Unless respond says otherwise it accepts everything.
type fakePeer struct {
	t    *testing.T
	ln   net.Listener
	opts peerOpts

	mu       sync.Mutex
	sessions []*peerSession
	wg       sync.WaitGroup
}

type peerOpts struct {
	banner string   // default "220 fake.example ESMTP"
	ext    []string // EHLO keywords
	tls    *tls.Config
	// respond may override the reply to a command line (without CRLF).
	// "" keeps the default; "CLOSE" closes the connection without reply;
	// "HANG" stops reading and answering.
	respond func(ps *peerSession, line string) string
	// final may override the reply after a body (DATA dot or BDAT LAST).
	final func(ps *peerSession, body []byte) string
	// noEHLO refuses EHLO with 502.
	noEHLO bool
}

// peerSession is one accepted connection.
type peerSession struct {
	mu     sync.Mutex
	lines  []string // commands received, without CRLF
	chunks []string // raw reads from the socket
	bodies [][]byte
	tls    bool
	txn    int    // MAIL commands seen
	remote string // the client's address as the peer sees it
}

func (ps *peerSession) Lines() []string {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return append([]string(nil), ps.lines...)
}

func (ps *peerSession) Chunks() []string {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return append([]string(nil), ps.chunks...)
}

func (ps *peerSession) Bodies() [][]byte {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return append([][]byte(nil), ps.bodies...)
}

func startPeer(t *testing.T, o peerOpts) *fakePeer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if o.banner == "" {
		o.banner = "220 fake.example ESMTP"
	}
	p := &fakePeer{t: t, ln: ln, opts: o}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		ln.Close()
		p.wg.Wait()
	})
	return p
}

func (p *fakePeer) candidate() mx.Candidate {
	ap := netip.MustParseAddrPort(p.ln.Addr().String())
	return mx.Candidate{Name: "fake.example.", Addr: ap.Addr(), Port: int(ap.Port())}
}

// secureCandidate is candidate with DNSSEC-validated addresses (DANE).
func (p *fakePeer) secureCandidate() mx.Candidate {
	c := p.candidate()
	c.Secure = true
	return c
}

func (p *fakePeer) Sessions() []*peerSession {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*peerSession(nil), p.sessions...)
}

// session waits for the i-th connection to have been accepted.
func (p *fakePeer) session(i int) *peerSession {
	p.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if s := p.Sessions(); len(s) > i {
			return s[i]
		}
		time.Sleep(5 * time.Millisecond)
	}
	p.t.Fatalf("no session %d", i)
	return nil
}

func (p *fakePeer) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		ps := &peerSession{remote: c.RemoteAddr().String()}
		p.mu.Lock()
		p.sessions = append(p.sessions, ps)
		p.mu.Unlock()
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer c.Close()
			p.serve(c, ps)
		}()
	}
}

// recConn records every raw read.
type recConn struct {
	net.Conn
	ps *peerSession
}

func (r recConn) Read(b []byte) (int, error) {
	n, err := r.Conn.Read(b)
	if n > 0 {
		r.ps.mu.Lock()
		r.ps.chunks = append(r.ps.chunks, string(b[:n]))
		r.ps.mu.Unlock()
	}
	return n, err
}

func (p *fakePeer) serve(raw net.Conn, ps *peerSession) {
	var conn net.Conn = recConn{raw, ps}
	r := bufio.NewReader(conn)
	w := bufio.NewWriter(conn)
	send := func(s string) {
		for _, l := range strings.Split(s, "\n") {
			w.WriteString(l + "\r\n")
		}
		w.Flush()
	}
	_ = raw.SetDeadline(time.Now().Add(30 * time.Second))
	send(p.opts.banner)
	if !strings.HasPrefix(p.opts.banner, "2") {
		r.ReadString('\n') // QUIT
		send("221 bye")
		return
	}
	rcpts := 0
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		ps.mu.Lock()
		ps.lines = append(ps.lines, line)
		if strings.HasPrefix(strings.ToUpper(line), "MAIL") {
			ps.txn++
		}
		ps.mu.Unlock()
		if p.opts.respond != nil {
			switch reply := p.opts.respond(ps, line); reply {
			case "":
			case "CLOSE":
				return
			case "HANG":
				// stop answering; wait for the client to go away
				_, _ = io.Copy(io.Discard, r)
				return
			default:
				send(reply)
				if strings.HasPrefix(reply, "421") {
					return
				}
				if strings.HasPrefix(strings.ToUpper(line), "DATA") && strings.HasPrefix(reply, "354") && !p.readData(r, ps, send) {
					return
				}
				if strings.HasPrefix(strings.ToUpper(line), "BDAT") {
					n, _ := strconv.Atoi(strings.Fields(line)[1])
					io.CopyN(io.Discard, r, int64(n))
				}
				continue
			}
		}
		verb := strings.ToUpper(strings.Fields(line + " ")[0])
		switch verb {
		case "EHLO":
			if p.opts.noEHLO {
				send("502 5.5.1 EHLO not implemented")
				continue
			}
			lines := []string{"250-fake.example hello"}
			for _, e := range p.opts.ext {
				if e == "STARTTLS" && ps.tls {
					continue
				}
				lines = append(lines, "250-"+e)
			}
			lines[len(lines)-1] = "250 " + lines[len(lines)-1][4:]
			send(strings.Join(lines, "\n"))
		case "HELO":
			send("250 fake.example")
		case "STARTTLS":
			send("220 2.0.0 go ahead")
			tc := tls.Server(raw, p.opts.tls)
			if err := tc.Handshake(); err != nil {
				return
			}
			ps.mu.Lock()
			ps.tls = true
			ps.mu.Unlock()
			conn = recConn{tc, ps}
			r = bufio.NewReader(conn)
			w = bufio.NewWriter(conn)
		case "AUTH":
			send("235 2.7.0 ok")
		case "MAIL":
			rcpts = 0
			send("250 2.1.0 ok")
		case "RCPT":
			rcpts++
			send("250 2.1.5 ok")
		case "RSET":
			rcpts = 0
			send("250 2.0.0 reset")
		case "DATA":
			if rcpts == 0 {
				send("554 5.5.1 no valid recipients")
				continue
			}
			send("354 go ahead")
			if !p.readData(r, ps, send) {
				return
			}
		case "BDAT":
			f := strings.Fields(line)
			n, _ := strconv.Atoi(f[1])
			body := make([]byte, n)
			if _, err := io.ReadFull(r, body); err != nil {
				return
			}
			if rcpts == 0 {
				send("554 5.5.1 no valid recipients")
				continue
			}
			if !p.finish(ps, body, send) {
				return
			}
		case "QUIT":
			send("221 2.0.0 bye")
			return
		default:
			send("500 5.5.2 what?")
		}
	}
}

// readData reads a dot-terminated body and answers it; false means the
// connection is to be closed.
func (p *fakePeer) readData(r *bufio.Reader, ps *peerSession, send func(string)) bool {
	var body bytes.Buffer
	for {
		l, err := r.ReadString('\n')
		if err != nil {
			return false
		}
		if l == ".\r\n" {
			break
		}
		if strings.HasPrefix(l, ".") {
			l = l[1:]
		}
		body.WriteString(l)
	}
	return p.finish(ps, body.Bytes(), send)
}

func (p *fakePeer) finish(ps *peerSession, body []byte, send func(string)) bool {
	ps.mu.Lock()
	ps.bodies = append(ps.bodies, body)
	ps.mu.Unlock()
	reply := "250 2.0.0 Ok: queued as 1234"
	if p.opts.final != nil {
		if r := p.opts.final(ps, body); r != "" {
			reply = r
		}
	}
	if reply == "CLOSE" {
		return false
	}
	send(reply)
	return true
}

// testPath is the default egress path with short timeouts, TLS off and
// loopback allowed.
func testPath() *config.EgressPath {
	p := config.DefaultEgressPath()
	p.EnableTLS = TLSDisabled
	p.ProhibitedHosts = nil
	for _, d := range []*time.Duration{&p.ConnectTimeout, &p.BannerTimeout, &p.EhloTimeout, &p.MailFromTimeout,
		&p.RcptToTimeout, &p.DataTimeout, &p.DataDotTimeout, &p.RsetTimeout, &p.StartTLSTimeout, &p.AuthTimeout} {
		*d = 5 * time.Second
	}
	return &p
}

// selfSigned returns a server TLS config for name and 127.0.0.1, and a pool
// that trusts it.
func selfSigned(t *testing.T, name string) (*tls.Config, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		DNSNames:              []string{name},
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}, pool
}
