package smtpd

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// XCLIENT (allow_xclient): a trusted client such as a proxy or a test
// harness names the address and port of the client it speaks for (ADDR,
// PORT) and of the server it reached (DESTADDR, DESTPORT). The session
// then starts over with those addresses, as after the PROXY protocol:
// they become received_from and received_via (the connection's own ones
// are kept as orig_received_from and orig_received_via) and decide
// relaying. The reply is a new greeting, and the client has to say EHLO
// again.

// xclientExtension is the EHLO keyword line when allow_xclient is set.
const xclientExtension = "XCLIENT ADDR PORT DESTADDR DESTPORT"

func (ss *session) cmdXClient(arg string) {
	if !ss.cfg.AllowXClient {
		ss.reply(550, "insufficient authorization")
		return
	}
	if ss.t.hasMail {
		ss.reply(503, "5.5.1 XCLIENT is not allowed during a mail transaction")
		return
	}
	peer, local := ss.peer, ss.local
	fields := strings.Fields(arg)
	if len(fields) == 0 {
		ss.reply(501, "5.5.4 XCLIENT needs attributes: ADDR, PORT, DESTADDR, DESTPORT")
		return
	}
	for _, field := range fields {
		name, value, ok := strings.Cut(field, "=")
		if !ok {
			ss.reply(501, "5.5.4 XCLIENT attribute without a value: "+field)
			return
		}
		value, err := xtextDecode(value)
		if err != nil {
			ss.reply(501, "5.5.4 XCLIENT "+name+": "+err.Error())
			return
		}
		if value == "[UNAVAILABLE]" || value == "[TEMPUNAVAIL]" {
			continue // keep what is known
		}
		switch strings.ToUpper(name) {
		case "ADDR":
			a, err := parseXClientAddr(value)
			if err != nil {
				ss.reply(501, "5.5.4 XCLIENT ADDR: "+err.Error())
				return
			}
			peer = netip.AddrPortFrom(a, peer.Port())
		case "PORT":
			p, err := strconv.ParseUint(value, 10, 16)
			if err != nil {
				ss.reply(501, "5.5.4 XCLIENT PORT: invalid port "+value)
				return
			}
			peer = netip.AddrPortFrom(peer.Addr(), uint16(p))
		case "DESTADDR":
			a, err := parseXClientAddr(value)
			if err != nil {
				ss.reply(501, "5.5.4 XCLIENT DESTADDR: "+err.Error())
				return
			}
			local = netip.AddrPortFrom(a, local.Port())
		case "DESTPORT":
			p, err := strconv.ParseUint(value, 10, 16)
			if err != nil {
				ss.reply(501, "5.5.4 XCLIENT DESTPORT: invalid port "+value)
				return
			}
			local = netip.AddrPortFrom(local.Addr(), uint16(p))
		default:
			ss.reply(501, "5.5.4 XCLIENT attribute not supported: "+name)
			return
		}
	}
	ss.rebind(peer, local)
	ss.startOver()
	ss.helo = ""
	ss.reply(220, ss.host()+" "+ss.cfg.Banner)
}

// parseXClientAddr parses an XCLIENT address: IPv4, or IPv6 with the
// "IPV6:" prefix (accepted without it too).
func parseXClientAddr(s string) (netip.Addr, error) {
	if len(s) > 5 && strings.EqualFold(s[:5], "IPV6:") {
		s = s[5:]
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("invalid address %q", s)
	}
	return a.Unmap(), nil
}

// xtextDecode undoes RFC 3461 xtext: "+XX" is the octet of hex XX.
func xtextDecode(s string) (string, error) {
	if !strings.Contains(s, "+") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '+' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", fmt.Errorf("bad xtext %q", s)
		}
		v, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
		if err != nil {
			return "", fmt.Errorf("bad xtext %q", s)
		}
		b.WriteByte(byte(v))
		i += 2
	}
	return b.String(), nil
}
