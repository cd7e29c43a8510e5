package egress

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"

	"github.com/kumogo/kumogo/internal/config"
)

// SOCKS5 (RFC 1928) with username/password authentication (RFC 1929), the
// way KumoMTA's egress sources and its proxy-server (KumoProxy) use it: after
// the greeting the client sends a BIND request naming the source address
// (port 0) that the proxy should connect from, then a CONNECT request to
// the destination on the same connection. A proxy that cannot bind the
// address refuses the BIND, so a wrong source is an error rather than mail
// sent from an unintended IP. This two-request exchange is outside what
// general SOCKS5 client libraries offer (golang.org/x/net/proxy sends one
// CONNECT per connection), hence the few lines here.

const (
	socksVersion     = 5
	socksAuthNone    = 0
	socksAuthUser    = 2
	socksAuthNoneOK  = 0xff
	socksCmdConnect  = 1
	socksCmdBind     = 2
	socksAtypIPv4    = 1
	socksAtypDomain  = 3
	socksAtypIPv6    = 4
	socksUserPassVer = 1
)

// ProxyBindError is a SOCKS5 proxy's refusal to use the requested source
// address (KumoMTA's ProxyBindError).
type ProxyBindError struct {
	Source netip.Addr
	Reply  byte
}

func (e *ProxyBindError) Error() string {
	return fmt.Sprintf("the proxy failed to bind source address %s: %s", e.Source, socksReplyText(e.Reply))
}

// socks5Connect runs the SOCKS5 exchange on conn: authentication (none, or
// username/password when src has credentials), BIND of via, CONNECT to
// target. It returns the proxy's outbound address from the CONNECT reply.
func socks5Connect(conn net.Conn, via netip.Addr, target netip.AddrPort, src *config.EgressSource) (netip.AddrPort, error) {
	bound, err := socks5Handshake(conn, via, target, src)
	if err != nil {
		var be *ProxyBindError
		if !errors.As(err, &be) && !errors.Is(err, errSocksConnect) {
			// the greeting, the authentication or the BIND went wrong:
			// the proxy is unhealthy, whatever the destination
			server, _ := netip.ParseAddrPort(conn.RemoteAddr().String())
			err = &ProxyConnectError{Server: server, Err: err}
		}
	}
	return bound, err
}

// errSocksConnect marks a failed CONNECT: the destination's failure, not
// the proxy's.
var errSocksConnect = errors.New("socks5 connect")

// socks5Handshake is socks5Connect's exchange.
func socks5Handshake(conn net.Conn, via netip.Addr, target netip.AddrPort, src *config.EgressSource) (netip.AddrPort, error) {
	methods := []byte{socksAuthNone}
	if src.Socks5ProxyUsername != "" {
		methods = append(methods, socksAuthUser)
	}
	greeting := append([]byte{socksVersion, byte(len(methods))}, methods...)
	if _, err := conn.Write(greeting); err != nil {
		return netip.AddrPort{}, fmt.Errorf("socks5 greeting: %w", err)
	}
	var choice [2]byte
	if _, err := io.ReadFull(conn, choice[:]); err != nil {
		return netip.AddrPort{}, fmt.Errorf("socks5 greeting: reading the method: %w", err)
	}
	if choice[0] != socksVersion {
		return netip.AddrPort{}, fmt.Errorf("socks5 greeting: the proxy answered version %d", choice[0])
	}
	switch choice[1] {
	case socksAuthNone:
	case socksAuthUser:
		if src.Socks5ProxyUsername == "" {
			return netip.AddrPort{}, errors.New("socks5: the proxy asks for a username and password, and the source has none")
		}
		if err := socks5Auth(conn, src); err != nil {
			return netip.AddrPort{}, err
		}
	case socksAuthNoneOK:
		return netip.AddrPort{}, errors.New("socks5: the proxy accepts none of the offered authentication methods")
	default:
		return netip.AddrPort{}, fmt.Errorf("socks5: the proxy chose authentication method %d, which was not offered", choice[1])
	}

	if _, err := socks5Request(conn, socksCmdBind, netip.AddrPortFrom(via, 0)); err != nil {
		var re *socksReplyError
		if errors.As(err, &re) {
			return netip.AddrPort{}, &ProxyBindError{Source: via, Reply: re.reply}
		}
		return netip.AddrPort{}, fmt.Errorf("socks5 bind %s: %w", via, err)
	}
	bound, err := socks5Request(conn, socksCmdConnect, target)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%w from %s: %w", errSocksConnect, via, err)
	}
	if !bound.IsValid() {
		// A proxy that answers with a host name: the address asked for.
		bound = netip.AddrPortFrom(via, 0)
	}
	return bound, nil
}

// socks5Auth is RFC 1929's subnegotiation.
func socks5Auth(conn net.Conn, src *config.EgressSource) error {
	pass, err := src.Socks5ProxyPassword.Read()
	if err != nil {
		return fmt.Errorf("socks5: reading socks5_proxy_password: %w", err)
	}
	user := src.Socks5ProxyUsername
	if len(user) > 255 || len(pass) > 255 {
		return errors.New("socks5: username or password longer than 255 bytes")
	}
	msg := make([]byte, 0, 3+len(user)+len(pass))
	msg = append(msg, socksUserPassVer, byte(len(user)))
	msg = append(msg, user...)
	msg = append(msg, byte(len(pass)))
	msg = append(msg, pass...)
	if _, err := conn.Write(msg); err != nil {
		return fmt.Errorf("socks5 authentication: %w", err)
	}
	var st [2]byte
	if _, err := io.ReadFull(conn, st[:]); err != nil {
		return fmt.Errorf("socks5 authentication: reading the status: %w", err)
	}
	if st[0] != socksUserPassVer {
		return fmt.Errorf("socks5 authentication: the proxy answered subnegotiation version %d", st[0])
	}
	if st[1] != 0 {
		return errors.New("socks5 authentication: the proxy refused the username and password")
	}
	return nil
}

// socksReplyError is a request the proxy refused with reply code reply.
type socksReplyError struct{ reply byte }

func (e *socksReplyError) Error() string { return "the proxy refused: " + socksReplyText(e.reply) }

// socks5Request sends one request and reads its reply, returning the
// address the reply names. Reads are exact: whatever the destination sends
// after the reply (the SMTP banner) stays on the connection.
func socks5Request(conn net.Conn, cmd byte, addr netip.AddrPort) (netip.AddrPort, error) {
	a := addr.Addr().Unmap()
	msg := []byte{socksVersion, cmd, 0}
	if a.Is4() {
		msg = append(msg, socksAtypIPv4)
	} else {
		msg = append(msg, socksAtypIPv6)
	}
	msg = append(msg, a.AsSlice()...)
	msg = binary.BigEndian.AppendUint16(msg, addr.Port())
	if _, err := conn.Write(msg); err != nil {
		return netip.AddrPort{}, err
	}
	var head [4]byte
	if _, err := io.ReadFull(conn, head[:]); err != nil {
		return netip.AddrPort{}, fmt.Errorf("reading the reply: %w", err)
	}
	if head[0] != socksVersion {
		return netip.AddrPort{}, fmt.Errorf("the proxy answered version %d", head[0])
	}
	var raw []byte
	switch head[3] {
	case socksAtypIPv4:
		raw = make([]byte, 4+2)
	case socksAtypIPv6:
		raw = make([]byte, 16+2)
	case socksAtypDomain:
		var n [1]byte
		if _, err := io.ReadFull(conn, n[:]); err != nil {
			return netip.AddrPort{}, fmt.Errorf("reading the reply: %w", err)
		}
		raw = make([]byte, int(n[0])+2)
	default:
		return netip.AddrPort{}, fmt.Errorf("the proxy's reply has address type %d", head[3])
	}
	if _, err := io.ReadFull(conn, raw); err != nil {
		return netip.AddrPort{}, fmt.Errorf("reading the reply: %w", err)
	}
	if head[1] != 0 {
		return netip.AddrPort{}, &socksReplyError{reply: head[1]}
	}
	if head[3] == socksAtypDomain {
		return netip.AddrPort{}, nil
	}
	ip, _ := netip.AddrFromSlice(raw[:len(raw)-2])
	return netip.AddrPortFrom(ip, binary.BigEndian.Uint16(raw[len(raw)-2:])), nil
}

// socksReplyText names RFC 1928's reply codes.
func socksReplyText(rep byte) string {
	switch rep {
	case 1:
		return "general SOCKS server failure"
	case 2:
		return "connection not allowed by ruleset"
	case 3:
		return "network unreachable"
	case 4:
		return "host unreachable"
	case 5:
		return "connection refused"
	case 6:
		return "TTL expired"
	case 7:
		return "command not supported"
	case 8:
		return "address type not supported"
	}
	return fmt.Sprintf("reply code %d", rep)
}
