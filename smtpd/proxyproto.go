package smtpd

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// The HAProxy PROXY protocol (require_proxy_protocol): a load balancer
// in front of the listener opens every connection with a header naming the
// client's and the balancer's addresses, in a text form (v1) or a binary
// one (v2). See haproxy's doc/proxy-protocol.txt.

// proxyV2Sig starts every v2 header.
var proxyV2Sig = []byte("\r\n\r\n\x00\r\nQUIT\n")

// proxyV1Max is the longest v1 header, CRLF included.
const proxyV1Max = 107

// proxyHeader is what a PROXY header says. ok is false when it names no
// addresses (v1 UNKNOWN, v2 LOCAL or an unsupported family): the
// connection's own addresses stand then.
type proxyHeader struct {
	src, dst netip.AddrPort
	ok       bool
}

var errNoProxyHeader = errors.New("no PROXY protocol header")

// readProxyHeader reads a v1 or v2 header from r.
func readProxyHeader(r *bufio.Reader) (proxyHeader, error) {
	first, err := r.Peek(1)
	if err != nil {
		return proxyHeader{}, fmt.Errorf("%w: %v", errNoProxyHeader, err)
	}
	switch first[0] {
	case 'P':
		return readProxyV1(r)
	case '\r':
		return readProxyV2(r)
	}
	return proxyHeader{}, errNoProxyHeader
}

func readProxyV1(r *bufio.Reader) (proxyHeader, error) {
	var line []byte
	for len(line) < proxyV1Max {
		c, err := r.ReadByte()
		if err != nil {
			return proxyHeader{}, fmt.Errorf("PROXY v1 header: %w", err)
		}
		line = append(line, c)
		if c == '\n' {
			break
		}
	}
	if !bytes.HasSuffix(line, []byte("\r\n")) {
		return proxyHeader{}, errors.New("PROXY v1 header: not a CRLF-terminated line of at most 107 bytes")
	}
	f := strings.Split(string(line[:len(line)-2]), " ")
	if f[0] != "PROXY" || len(f) < 2 {
		return proxyHeader{}, errNoProxyHeader
	}
	switch f[1] {
	case "UNKNOWN":
		return proxyHeader{}, nil
	case "TCP4", "TCP6":
	default:
		return proxyHeader{}, fmt.Errorf("PROXY v1 header: unknown protocol %q", f[1])
	}
	if len(f) != 6 {
		return proxyHeader{}, fmt.Errorf("PROXY v1 header: %d fields, want 6", len(f))
	}
	src, err1 := netip.ParseAddr(f[2])
	dst, err2 := netip.ParseAddr(f[3])
	sport, err3 := strconv.ParseUint(f[4], 10, 16)
	dport, err4 := strconv.ParseUint(f[5], 10, 16)
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return proxyHeader{}, fmt.Errorf("PROXY v1 header: %w", err)
	}
	if (f[1] == "TCP4") != (src.Is4() && dst.Is4()) || src.Zone() != "" || dst.Zone() != "" {
		return proxyHeader{}, fmt.Errorf("PROXY v1 header: addresses do not match %s", f[1])
	}
	return proxyHeader{src: netip.AddrPortFrom(src, uint16(sport)), dst: netip.AddrPortFrom(dst, uint16(dport)), ok: true}, nil
}

func readProxyV2(r *bufio.Reader) (proxyHeader, error) {
	var fixed [16]byte
	if _, err := io.ReadFull(r, fixed[:]); err != nil {
		return proxyHeader{}, fmt.Errorf("PROXY v2 header: %w", err)
	}
	if !bytes.Equal(fixed[:12], proxyV2Sig) {
		return proxyHeader{}, errNoProxyHeader
	}
	verCmd, fam := fixed[12], fixed[13]
	n := int(binary.BigEndian.Uint16(fixed[14:16]))
	if verCmd>>4 != 2 {
		return proxyHeader{}, fmt.Errorf("PROXY v2 header: version %d", verCmd>>4)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return proxyHeader{}, fmt.Errorf("PROXY v2 header: %w", err)
	}
	switch verCmd & 0xf {
	case 0: // LOCAL: the balancer's own connection (health checks)
		return proxyHeader{}, nil
	case 1: // PROXY
	default:
		return proxyHeader{}, fmt.Errorf("PROXY v2 header: command %d", verCmd&0xf)
	}
	var size int
	switch fam >> 4 {
	case 1: // AF_INET
		size = 4
	case 2: // AF_INET6
		size = 16
	default: // AF_UNSPEC, AF_UNIX: no usable addresses
		return proxyHeader{}, nil
	}
	if fam&0xf != 1 { // not STREAM
		return proxyHeader{}, nil
	}
	if len(body) < 2*size+4 {
		return proxyHeader{}, fmt.Errorf("PROXY v2 header: %d address bytes, want at least %d", len(body), 2*size+4)
	}
	src, _ := netip.AddrFromSlice(body[:size])
	dst, _ := netip.AddrFromSlice(body[size : 2*size])
	sport := binary.BigEndian.Uint16(body[2*size:])
	dport := binary.BigEndian.Uint16(body[2*size+2:])
	return proxyHeader{src: netip.AddrPortFrom(src.Unmap(), sport), dst: netip.AddrPortFrom(dst.Unmap(), dport), ok: true}, nil
}

// readProxy reads the PROXY protocol header that require_proxy_protocol
// demands before anything else on the connection. The addresses it names
// become the session's peer and local addresses (received_from and
// received_via; the connection's own ones are kept as orig_received_from
// and orig_received_via). It reports false, having logged why, when the
// connection does not start with a valid header and must be closed.
func (ss *session) readProxy() bool {
	ss.raw.SetReadDeadline(time.Now().Add(ss.cfg.ClientTimeout))
	h, err := readProxyHeader(ss.rd)
	if err != nil {
		ss.s.log.Warn().Err(err).Str("peer", ss.peer.String()).Msg("closing connection: require_proxy_protocol is set and it did not start with a valid PROXY header")
		return false
	}
	if h.ok { // not UNKNOWN or LOCAL, where the connection's own addresses stand
		ss.rebind(h.src, h.dst)
	}
	return true
}

// rebind makes peer and local the session's addresses (PROXY header,
// XCLIENT): received_from and received_via, the relay check, trace headers
// and records follow them; the connection's own are kept, once, as
// orig_received_from and orig_received_via.
func (ss *session) rebind(peer, local netip.AddrPort) {
	if _, ok := ss.meta.Get("orig_received_from"); !ok {
		ss.meta.Set("orig_received_from", ss.peer.String())
		ss.meta.Set("orig_received_via", ss.local.String())
	}
	ss.peer, ss.local = peer, local
	ss.peerIP, ss.localIP = peer.Addr().String(), local.Addr().String()
	ss.meta.Set("received_from", peer.String())
	ss.meta.Set("received_via", local.String())
	ss.applyConfig() // peer and via blocks follow the new addresses
}
