package runtime

import (
	"net"
	"net/mail"
	"net/netip"
	"sort"
	"strings"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/kumogo/kumogo/internal/mailauth"
	"github.com/kumogo/kumogo/internal/message"
	"github.com/kumogo/kumogo/internal/mtasts"
	"github.com/kumogo/kumogo/internal/smtpreply"
)

// Authentication of received mail: kumo.spf.check_host/check_msg,
// kumo.dmarc.check_msg, msg:dkim_verify and
// msg:add_authentication_results (KumoMTA's pages of those names; the
// result tables are its authenticationresult object). The checks live in
// internal/mailauth; this file converts arguments and results.

// AuthDNS is implemented by a DNS that serves the mail authentication
// checks (the process's resolver and each kumo.dns.define_resolver one).
type AuthDNS interface {
	AuthResolver() mailauth.Resolver
}

// authResolver is the resolver named by argument n (nil: the default).
func (st *state) authResolver(L *lua.LState, n int, fn string) mailauth.Resolver {
	d, ok := st.dnsFor(L, n, fn).(AuthDNS)
	if !ok {
		L.RaiseError("%s: this process's resolver does not serve mail authentication", fn)
	}
	return d.AuthResolver()
}

func (st *state) openSPF() *lua.LTable {
	t := st.L.NewTable()
	st.L.SetFuncs(t, map[string]lua.LGFunction{
		"check_host": st.spfCheckHost,
		"check_msg":  st.spfCheckMsg,
	})
	return t
}

// openMailAuthExtras is the kumogo.mail_auth module behind
// policy-extras.mail_auth: iprev(IP [, RESOLVER]) → authenticationresult,
// and iprev_msg and check (mailauthcheck.go).
func (st *state) openMailAuthExtras() *lua.LTable {
	t := st.L.NewTable()
	st.L.SetFuncs(t, map[string]lua.LGFunction{
		"check":     st.mailAuthCheck,
		"iprev_msg": st.mailAuthIPRevMsg,
		"iprev": func(L *lua.LState) int {
			s := L.CheckString(1)
			ip, err := netip.ParseAddr(strings.Trim(s, "[]"))
			if err != nil {
				L.ArgError(1, "an IP address expected")
			}
			r := st.authResolver(L, 2, "mail_auth.iprev")
			L.Push(st.authResultTable(mailauth.IPRev(st.callCtx(), r, ip)))
			return 1
		},
	})
	return t
}

func (st *state) openDMARC() *lua.LTable {
	t := st.L.NewTable()
	st.L.SetFuncs(t, map[string]lua.LGFunction{
		"check_msg": st.dmarcCheckMsg,
	})
	return t
}

// authMethods are the msg:* authentication methods.
func (st *state) authMethods() map[string]lua.LGFunction {
	return map[string]lua.LGFunction{
		"dkim_verify":                st.msgDKIMVerify,
		"add_authentication_results": st.msgAddAuthResults,
		"arc_verify":                 st.msgARCVerify,
		"arc_seal":                   st.msgARCSeal,
	}
}

// clientIP reads the received_from meta ("ip:port") as KumoMTA's SPF
// check does; its absence is an error there too.
func clientIP(L *lua.LState, v any, fn string) netip.Addr {
	s, _ := v.(string)
	if s == "" {
		L.RaiseError("%s: received_from missing from metadata", fn)
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap()
	}
	if h, _, err := net.SplitHostPort(s); err == nil {
		s = h
	}
	ip, err := netip.ParseAddr(strings.Trim(s, "[]"))
	if err != nil {
		L.RaiseError("%s: received_from %q is not an ip:port", fn, s)
	}
	return ip.Unmap()
}

// spfCheckHost is kumo.spf.check_host(DOMAIN, CONN_META [, SENDER [,
// RESOLVER]]): without SENDER, DOMAIN is checked as the HELO identity.
func (st *state) spfCheckHost(L *lua.LState) int {
	domain := L.CheckString(1)
	ud, ok := L.Get(2).(*lua.LUserData)
	var c *message.ConnMeta
	if ok && ud.Metatable == st.connMT {
		c, _ = ud.Value.(*message.ConnMeta)
	}
	if c == nil {
		L.ArgError(2, "connection metadata expected")
	}
	sender := L.OptString(3, "")
	r := st.authResolver(L, 4, "kumo.spf.check_host")
	from, _ := c.Get("received_from")
	q := mailauth.SPFQuery{IP: clientIP(L, from, "kumo.spf.check_host"), Domain: domain, Sender: sender, HELO: domain}
	if sender != "" {
		q.HELO = c.GetString("ehlo_domain")
	}
	disp, res := mailauth.CheckSPF(st.callCtx(), r, q)
	st.pushDisposition(L, disp, res)
	return 1
}

// spfCheckMsg is kumo.spf.check_msg(MSG [, RESOLVER]): the envelope
// sender checked for the received_from address, with ehlo_domain.
func (st *state) spfCheckMsg(L *lua.LState) int {
	m := st.checkMessage(L)
	r := st.authResolver(L, 2, "kumo.spf.check_msg")
	disp, res := st.spfForMessage(L, m, r, "kumo.spf.check_msg")
	st.pushDisposition(L, disp, res)
	return 1
}

// spfForMessage checks m's envelope sender for its received_from address
// (fn names the caller in errors).
func (st *state) spfForMessage(L *lua.LState, m *message.Message, r mailauth.Resolver, fn string) (string, mailauth.Result) {
	from, _ := m.Meta("received_from")
	ehlo, _ := m.MetaString("ehlo_domain")
	q := mailauth.SPFQuery{IP: clientIP(L, from, fn), Sender: m.Sender().String(), HELO: ehlo}
	if m.Sender().IsNull() {
		q.Domain = ehlo
	}
	return mailauth.CheckSPF(st.callCtx(), r, q)
}

// dmarcCheckMsg is kumo.dmarc.check_msg(MSG, DKIM_RESULTS, RESOLVER,
// SPF_RESULT, USE_REPORTING [, REPORTING_INFO]) → {disposition, result}.
// Aggregate and failure reports are not sent.
func (st *state) dmarcCheckMsg(L *lua.LState) int {
	m := st.checkMessage(L)
	dkimRes := st.authResultList(L, 2)
	r := st.authResolver(L, 3, "kumo.dmarc.check_msg")
	var spfRes mailauth.Result
	if L.Get(4) != lua.LNil {
		spfRes = st.authResultArg(L, 4)
	}
	if lua.LVAsBool(L.Get(5)) && L.Get(6) == lua.LNil {
		st.raiseRejection(L, &smtpreply.Rejection{Code: 400, Text: "DMARC reporting missing required fields", Mode: smtpreply.If421})
	}
	disp, res := st.dmarcForMessage(L, m, r, dkimRes, spfRes)
	st.pushDisposition(L, disp, res)
	return 1
}

// dmarcForMessage evaluates DMARC for m's From domain with its DKIM and
// SPF results.
func (st *state) dmarcForMessage(L *lua.LState, m *message.Message, r mailauth.Resolver, dkimRes []mailauth.Result, spfRes mailauth.Result) (string, mailauth.Result) {
	fromDomain, reason := messageFromDomain(m)
	if reason != "" {
		return mailauth.DMARCNone, mailauth.Result{Method: "dmarc", Result: "none", Reason: reason}
	}
	return mailauth.CheckDMARC(st.callCtx(), r, mailauth.DMARCQuery{
		FromDomain: fromDomain, MailFromDomain: m.Sender().Domain, DKIM: dkimRes, SPF: spfRes,
	})
}

// messageFromDomain is the domain of the message's single From mailbox,
// or why there is none (KumoMTA's texts).
func messageFromDomain(m *message.Message) (string, string) {
	vals := m.AllHeaderValues("From")
	if len(vals) != 1 {
		return "", "Only single 'From:' header supported"
	}
	addrs, err := mail.ParseAddressList(vals[0])
	if err != nil || len(addrs) != 1 {
		return "", "Only single 'From:' header supported"
	}
	i := strings.LastIndexByte(addrs[0].Address, '@')
	if i < 0 || i == len(addrs[0].Address)-1 {
		return "", "'From:' header missing domain"
	}
	return strings.ToLower(addrs[0].Address[i+1:]), ""
}

// msgDKIMVerify is msg:dkim_verify([RESOLVER]).
func (st *state) msgDKIMVerify(L *lua.LState) int {
	m := st.checkMessage(L)
	r := st.authResolver(L, 2, "dkim_verify")
	res := mailauth.VerifyDKIM(st.callCtx(), r, m.Data())
	t := L.CreateTable(len(res), 0)
	for _, x := range res {
		t.Append(st.authResultTable(x))
	}
	L.Push(t)
	return 1
}

// msgARCVerify is msg:arc_verify([RESOLVER]): the arc result of the
// message's ARC chain (RFC 8617): none, pass, fail or temperror.
func (st *state) msgARCVerify(L *lua.LState) int {
	m := st.checkMessage(L)
	r := st.authResolver(L, 2, "arc_verify")
	L.Push(st.authResultTable(mailauth.VerifyARC(st.callCtx(), r, m.Data()).Result()))
	return 1
}

// msgARCSeal is msg:arc_seal(SIGNER, SERV_ID, RESULTS [, RESOLVER]): a
// new ARC set (ARC-Seal, ARC-Message-Signature,
// ARC-Authentication-Results) is prepended, sealing the chain as it
// validates now; nothing is added to a chain that already failed.
func (st *state) msgARCSeal(L *lua.LState) int {
	m := st.checkMessage(L)
	ud, ok := L.Get(2).(*lua.LUserData)
	var s *dkimSigner
	if ok {
		s, _ = ud.Value.(*dkimSigner)
	}
	if s == nil {
		L.ArgError(2, "DkimSigner expected (from kumo.dkim.rsa_sha256_signer or ed25519_signer)")
	}
	servID := L.CheckString(3)
	res := st.authResultList(L, 4)
	r := st.authResolver(L, 5, "arc_seal")
	signer := mailauth.ARCSigner{Domain: s.opts.Domain, Selector: s.opts.Selector, Key: s.opts.Signer, Headers: s.opts.HeaderKeys}
	hdrs, err := mailauth.SealARC(st.callCtx(), r, m.Data(), signer, servID, res, time.Now())
	if err != nil {
		L.RaiseError("arc_seal: %s", err.Error())
	}
	if hdrs != "" {
		m.PrependRaw([]byte(hdrs))
	}
	return 0
}

// msgAddAuthResults is msg:add_authentication_results(SERV_ID, RESULTS):
// an Authentication-Results header is prepended.
func (st *state) msgAddAuthResults(L *lua.LState) int {
	m := st.checkMessage(L)
	servID := L.CheckString(2)
	res := st.authResultList(L, 3)
	m.PrependHeader("Authentication-Results", mailauth.FormatHeader(servID, res))
	return 0
}

func (st *state) pushDisposition(L *lua.LState, disp string, res mailauth.Result) {
	t := L.CreateTable(0, 2)
	t.RawSetString("disposition", lua.LString(disp))
	t.RawSetString("result", st.authResultTable(res))
	L.Push(t)
}

// authResultTable converts a result to KumoMTA's authenticationresult
// table (method_version and reason are nil when absent).
func (st *state) authResultTable(r mailauth.Result) *lua.LTable {
	t := st.L.CreateTable(0, 5)
	t.RawSetString("method", lua.LString(r.Method))
	t.RawSetString("result", lua.LString(r.Result))
	if r.MethodVersion != 0 {
		t.RawSetString("method_version", lua.LNumber(r.MethodVersion))
	}
	if r.Reason != "" {
		t.RawSetString("reason", lua.LString(r.Reason))
	}
	props := st.L.CreateTable(0, len(r.Props))
	keys := make([]string, 0, len(r.Props))
	for k := range r.Props {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		props.RawSetString(k, lua.LString(r.Props[k]))
	}
	t.RawSetString("props", props)
	return t
}

// authResultList reads argument n: an array of authenticationresult
// tables.
func (st *state) authResultList(L *lua.LState, n int) []mailauth.Result {
	t, ok := L.Get(n).(*lua.LTable)
	if !ok {
		L.ArgError(n, "an array of authentication results expected")
	}
	out := make([]mailauth.Result, 0, t.Len())
	for i := 1; i <= t.Len(); i++ {
		r, err := authResultFrom(t.RawGetInt(i))
		if err != "" {
			L.ArgError(n, "item "+itoa(i)+": "+err)
		}
		out = append(out, r)
	}
	return out
}

func (st *state) authResultArg(L *lua.LState, n int) mailauth.Result {
	r, err := authResultFrom(L.Get(n))
	if err != "" {
		L.ArgError(n, err)
	}
	return r
}

// authResultFrom decodes one authenticationresult table (unknown fields
// are refused, as KumoMTA's deserializer does).
func authResultFrom(v lua.LValue) (mailauth.Result, string) {
	t, ok := v.(*lua.LTable)
	if !ok {
		return mailauth.Result{}, "an authentication result table expected"
	}
	var r mailauth.Result
	var bad string
	t.ForEach(func(k, val lua.LValue) {
		if bad != "" {
			return
		}
		switch k.String() {
		case "method":
			r.Method = val.String()
		case "result":
			r.Result = val.String()
		case "reason":
			if val != lua.LNil {
				r.Reason = val.String()
			}
		case "method_version":
			if num, ok := val.(lua.LNumber); ok {
				r.MethodVersion = int(num)
			}
		case "props":
			pt, ok := val.(*lua.LTable)
			if !ok {
				bad = "props must be a table"
				return
			}
			r.Props = map[string]string{}
			pt.ForEach(func(pk, pv lua.LValue) { r.Props[pk.String()] = pv.String() })
		default:
			bad = "unknown field `" + k.String() + "`, expected one of `method`, `method_version`, `result`, `reason`, `props`"
		}
	})
	if bad == "" && (r.Method == "" || r.Result == "") {
		bad = "missing field `method` or `result`"
	}
	return r, bad
}

// TestMTASTS is implemented by a DNS whose delivery side takes MTA-STS
// policies from kumo.dns.configure_test_mta_sts.
type TestMTASTS interface {
	SetTestMTASTS(policies map[string]*mtasts.Policy)
}

// dnsConfigureTestMTASTS is kumo.dns.configure_test_mta_sts{DOMAIN =
// POLICY_TEXT, ...}: those policies replace the _mta-sts lookups and
// HTTPS fetches of delivery, so that a policy's own tests are hermetic.
func (st *state) dnsConfigureTestMTASTS(L *lua.LState) int {
	t := L.CheckTable(1)
	policies := map[string]*mtasts.Policy{}
	var bad string
	t.ForEach(func(k, v lua.LValue) {
		if bad != "" {
			return
		}
		p, err := mtasts.Parse(v.String())
		if err != nil {
			bad = k.String() + ": " + err.Error()
			return
		}
		policies[k.String()] = p
	})
	if bad != "" {
		L.RaiseError("kumo.dns.configure_test_mta_sts: %s", bad)
	}
	if st.rt.opts.Validating {
		return 0
	}
	d, ok := st.dns(L, "configure_test_mta_sts").(TestMTASTS)
	if !ok {
		L.RaiseError("kumo.dns.configure_test_mta_sts: this process does not deliver mail")
	}
	d.SetTestMTASTS(policies)
	return 0
}

// MTASTSSwitch is implemented by a DNS whose delivery side can stop
// consulting MTA-STS (kumo.dns.set_mta_sts_enabled).
type MTASTSSwitch interface {
	SetMTASTSEnabled(enabled bool)
}

// dnsSetMTASTSEnabled is kumo.dns.set_mta_sts_enabled(ENABLED): whether
// MX resolution consults MTA-STS policies at all (KumoMTA's page of that
// name; true by default). The egress path's enable_mta_sts only decides
// whether a policy found may raise TLS.
func (st *state) dnsSetMTASTSEnabled(L *lua.LState) int {
	enabled := L.CheckBool(1)
	if st.rt.opts.Validating {
		return 0
	}
	d, ok := st.dns(L, "set_mta_sts_enabled").(MTASTSSwitch)
	if !ok {
		L.RaiseError("kumo.dns.set_mta_sts_enabled: this process does not deliver mail")
	}
	d.SetMTASTSEnabled(enabled)
	return 0
}
