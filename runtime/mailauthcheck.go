package runtime

import (
	"net/netip"
	"strings"

	lua "github.com/yuin/gopher-lua"

	"github.com/kumogo/kumogo/internal/mailauth"
	"github.com/kumogo/kumogo/internal/message"
)

// The body of policy-extras.mail_auth's check and iprev_msg (KumoMTA's
// policy-extras.mail_auth pages): the helper checks its options in Lua and
// calls kumogo.mail_auth.check, which runs the checks here so that the
// results are not converted to Lua tables and back between them (DMARC
// and the Authentication-Results header read the DKIM and SPF results)
// and no Lua patterns are compiled per message. The results are those of
// the msg:* and kumo.* functions that the helper used to call in turn.

// mailAuthCheck is kumogo.mail_auth.check(MSG, OPTIONS [, RESOLVER]):
// OPTIONS are the helper's validated options (booleans dkim, spf, iprev,
// smtp_auth, dmarc, arc, add_auth_results_header; server_id).
func (st *state) mailAuthCheck(L *lua.LState) int {
	m := st.checkMessage(L)
	o := L.CheckTable(2)
	on := func(k string) bool { return lua.LVAsBool(o.RawGetString(k)) }
	r := st.authResolver(L, 3, "mail_auth.check")
	ctx := st.callCtx()

	result := L.CreateTable(0, 8)
	all := L.CreateTable(7, 0)
	result.RawSetString("auth_results", all)
	header := make([]mailauth.Result, 0, 7)
	add := func(name string, x mailauth.Result) {
		t := st.authResultTable(x)
		result.RawSetString(name, t)
		all.Append(t)
		header = append(header, x)
	}

	var dkimRes []mailauth.Result
	if on("dkim") {
		dkimRes = mailauth.VerifyDKIM(ctx, r, m.Data())
		if len(dkimRes) == 0 {
			dkimRes = []mailauth.Result{{Method: "dkim", Result: "none", Reason: "message was not signed", Props: map[string]string{}}}
		}
		list := L.CreateTable(len(dkimRes), 0)
		for _, x := range dkimRes {
			t := st.authResultTable(x)
			list.Append(t)
			all.Append(t)
		}
		result.RawSetString("dkim", list)
		header = append(header, dkimRes...)
	}
	var spfRes mailauth.Result
	if on("spf") {
		_, spfRes = st.spfForMessage(L, m, r, "kumo.spf.check_msg")
		add("spf", spfRes)
	}
	if on("iprev") {
		add("iprev", mailauth.IPRev(ctx, r, st.receivedFromIP(L, m)))
	}
	if on("smtp_auth") {
		auth := mailauth.Result{Method: "auth", Result: "none", Props: map[string]string{"smtp.mailfrom": m.Sender().String()}}
		if v, ok := m.Meta("authn_id"); ok && v != nil {
			if id := L.ToStringMeta(st.fromGo(v)).String(); id != "" {
				auth.Result = "pass"
				auth.Props["smtp.auth"] = id
			}
		}
		add("smtp_auth", auth)
	}
	if on("dmarc") && on("dkim") && on("spf") {
		_, res := st.dmarcForMessage(L, m, r, dkimRes, spfRes)
		add("dmarc", res)
	}
	if on("arc") {
		add("arc", mailauth.VerifyARC(ctx, r, m.Data()).Result())
	}
	if on("add_auth_results_header") {
		servID := "localhost"
		if s, ok := o.RawGetString("server_id").(lua.LString); ok {
			servID = string(s)
		} else if v, ok := m.Meta("hostname"); ok && v != nil {
			servID = L.ToStringMeta(st.fromGo(v)).String()
		}
		m.PrependHeader("Authentication-Results", mailauth.FormatHeader(servID, header))
	}
	L.Push(result)
	return 1
}

// mailAuthIPRevMsg is kumogo.mail_auth.iprev_msg(MSG [, RESOLVER]): iprev
// of the address the message came from.
func (st *state) mailAuthIPRevMsg(L *lua.LState) int {
	m := st.checkMessage(L)
	ip := st.receivedFromIP(L, m)
	r := st.authResolver(L, 2, "mail_auth.iprev")
	L.Push(st.authResultTable(mailauth.IPRev(st.callCtx(), r, ip)))
	return 1
}

// receivedFromIP is the address of the received_from meta ("ip:port",
// "[ip]:port" or "ip").
func (st *state) receivedFromIP(L *lua.LState, m *message.Message) netip.Addr {
	v, ok := m.Meta("received_from")
	if !ok || v == nil {
		L.RaiseError("mail_auth.iprev_msg: received_from missing from metadata")
	}
	s := ipOf(L.ToStringMeta(st.fromGo(v)).String())
	ip, err := netip.ParseAddr(strings.Trim(s, "[]"))
	if err != nil {
		L.RaiseError("mail_auth.iprev: an IP address expected, not %q", s)
	}
	return ip
}

// ipOf strips the port: "[v6]:port" and "[v6]" give v6, "a.b.c.d:port"
// gives a.b.c.d, anything else is returned as it is.
func ipOf(addr string) string {
	if strings.HasPrefix(addr, "[") {
		if end := strings.IndexByte(addr, ']'); end > 1 {
			return addr[1:end]
		}
	}
	if host, port, ok := strings.Cut(addr, ":"); ok && isDottedQuad(host) && port != "" && strings.Trim(port, "0123456789") == "" {
		return host
	}
	return addr
}

// isDottedQuad: four runs of digits separated by dots.
func isDottedQuad(s string) bool {
	dots, run := 0, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			run++
		case c == '.' && run > 0 && dots < 3:
			dots, run = dots+1, 0
		default:
			return false
		}
	}
	return dots == 3 && run > 0
}
