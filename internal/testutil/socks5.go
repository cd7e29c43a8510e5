package testutil

import (
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	socks5 "github.com/armon/go-socks5"
)

// SOCKS5Proxy is a SOCKS5 server on a free 127.0.0.1 port that behaves as
// KumoMTA's proxy-server (KumoProxy) does for egress sources: after the
// greeting (no authentication, or RFC 1929 username/password when Creds is
// set) a BIND request names the source address to connect from, and a
// CONNECT request on the same connection connects from it to the
// destination. Authentication and request parsing are armon/go-socks5's;
// only the BIND-then-CONNECT sequence, which general SOCKS5 servers do not
// offer, is written here.
type SOCKS5Proxy struct {
	Addr string

	creds socks5.StaticCredentials
	ln    net.Listener
	wg    sync.WaitGroup

	mu       sync.Mutex
	open     map[net.Conn]bool
	binds    []string
	connects []string
}

// StartSOCKS5 starts a proxy for tb; creds (user → password) nil means
// no authentication. It stops when the test ends.
func StartSOCKS5(tb testing.TB, creds map[string]string) *SOCKS5Proxy {
	tb.Helper()
	return StartSOCKS5On(tb, "127.0.0.1:0", creds)
}

// StartSOCKS5On is StartSOCKS5 listening on addr (a loopback address), for
// a test that brings a proxy up where one was missing.
func StartSOCKS5On(tb testing.TB, addr string, creds map[string]string) *SOCKS5Proxy {
	tb.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	p := &SOCKS5Proxy{Addr: ln.Addr().String(), creds: creds, ln: ln, open: map[net.Conn]bool{}}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				p.serve(c)
			}()
		}
	}()
	tb.Cleanup(p.Close)
	return p
}

// Close stops accepting, closes the relayed connections and waits for
// their goroutines.
func (p *SOCKS5Proxy) Close() {
	p.ln.Close()
	p.mu.Lock()
	for c := range p.open {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *SOCKS5Proxy) track(c net.Conn, on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if on {
		p.open[c] = true
	} else {
		delete(p.open, c)
	}
}

// Binds lists the source addresses clients asked for, in order.
func (p *SOCKS5Proxy) Binds() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.binds...)
}

// Connects lists "source -> destination" of the relayed connections.
func (p *SOCKS5Proxy) Connects() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.connects...)
}

const (
	socksRepOK        = 0
	socksRepFailure   = 1
	socksRepRefused   = 5
	socksRepNoCommand = 7
)

func (p *SOCKS5Proxy) serve(c net.Conn) {
	p.track(c, true)
	defer p.track(c, false)
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	var head [2]byte
	if _, err := io.ReadFull(c, head[:]); err != nil || head[0] != 5 {
		return
	}
	methods := make([]byte, head[1])
	if _, err := io.ReadFull(c, methods); err != nil {
		return
	}
	var auth socks5.Authenticator = socks5.NoAuthAuthenticator{}
	if p.creds != nil {
		auth = socks5.UserPassAuthenticator{Credentials: p.creds}
	}
	offered := false
	for _, m := range methods {
		offered = offered || m == auth.GetCode()
	}
	if !offered {
		c.Write([]byte{5, 0xff})
		return
	}
	if _, err := auth.Authenticate(c, c); err != nil {
		return
	}

	var source netip.Addr
	for {
		req, err := socks5.NewRequest(c)
		if err != nil {
			return
		}
		dest, _ := netip.AddrFromSlice(req.DestAddr.IP)
		dest = dest.Unmap()
		switch req.Command {
		case socks5.BindCommand:
			// Bind as KumoProxy does: the address must be local.
			l, err := net.ListenTCP("tcp", &net.TCPAddr{IP: dest.AsSlice()})
			if err != nil || source.IsValid() {
				socksReply(c, socksRepFailure, netip.AddrPort{})
				return
			}
			l.Close()
			source = dest
			p.mu.Lock()
			p.binds = append(p.binds, dest.String())
			p.mu.Unlock()
			socksReply(c, socksRepOK, netip.AddrPortFrom(dest, 0))
		case socks5.ConnectCommand:
			d := net.Dialer{Timeout: 5 * time.Second}
			if source.IsValid() {
				d.LocalAddr = &net.TCPAddr{IP: source.AsSlice()}
			}
			target := netip.AddrPortFrom(dest, uint16(req.DestAddr.Port))
			out, err := d.Dial("tcp", target.String())
			if err != nil {
				socksReply(c, socksRepRefused, netip.AddrPort{})
				return
			}
			p.track(out, true)
			defer p.track(out, false)
			local := out.LocalAddr().(*net.TCPAddr).AddrPort()
			p.mu.Lock()
			p.connects = append(p.connects, local.Addr().String()+" -> "+target.String())
			p.mu.Unlock()
			socksReply(c, socksRepOK, local)
			c.SetDeadline(time.Time{})
			relay(c, out)
			return
		default:
			socksReply(c, socksRepNoCommand, netip.AddrPort{})
			return
		}
	}
}

// socksReply writes an RFC 1928 reply naming addr (0.0.0.0:0 when zero).
func socksReply(w io.Writer, rep byte, addr netip.AddrPort) {
	a := addr.Addr().Unmap()
	if !a.IsValid() {
		a = netip.IPv4Unspecified()
	}
	msg := []byte{5, rep, 0, 1}
	if !a.Is4() {
		msg[3] = 4
	}
	msg = append(msg, a.AsSlice()...)
	msg = binary.BigEndian.AppendUint16(msg, addr.Port())
	w.Write(msg)
}

// relay copies both ways until either side closes.
func relay(a, b net.Conn) {
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go cp(a, b)
	go cp(b, a)
	<-done
	<-done
	a.Close()
	b.Close()
}
