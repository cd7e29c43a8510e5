package runtime

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/event"
	lua "github.com/yuin/gopher-lua"
)

// DNS is the resolver behind kumo.dns.*. The delivery engine implements
// it; the runtime only converts arguments and results.
type DNS interface {
	// LookupMX resolves domain's MX records; the runtime turns the answer
	// into kumo.dns.lookup_mx's table.
	LookupMX(ctx context.Context, domain string) (*MXAnswer, error)
	// LookupAddr resolves name to IP address strings (A and AAAA).
	LookupAddr(ctx context.Context, name string) ([]string, error)
	// Configure replaces the name servers ("ip:port") used for lookups.
	Configure(servers []string) error
}

// MXAnswer is the answer of kumo.dns.lookup_mx, KumoMTA's MailExchanger
// (KumoMTA docs: "kumo.dns.lookup_mx").
type MXAnswer struct {
	// DomainName is the queried domain as an FQDN with the trailing dot.
	DomainName string
	// Hosts are the exchangers in preference order.
	Hosts []string
	// ByPref groups Hosts by preference.
	ByPref map[uint16][]string
	// SiteName names the set of hosts (the ready queue's site).
	SiteName        string
	IsDomainLiteral bool
	IsSecure        bool
	// IsMX is false for an implicit MX (the domain's own addresses) and
	// for a domain literal.
	IsMX bool
}

// table renders a as KumoMTA's lookup_mx table: domain_name, hosts,
// by_pref (integer preference → hosts), site_name, is_domain_literal,
// is_secure, is_mx.
func (a *MXAnswer) table(L *lua.LState) *lua.LTable {
	strs := func(list []string) *lua.LTable {
		t := L.CreateTable(len(list), 0)
		for _, s := range list {
			t.Append(lua.LString(s))
		}
		return t
	}
	byPref := L.CreateTable(0, len(a.ByPref))
	for p, hosts := range a.ByPref {
		byPref.RawSetInt(int(p), strs(hosts))
	}
	t := L.CreateTable(0, 7)
	t.RawSetString("domain_name", lua.LString(a.DomainName))
	t.RawSetString("hosts", strs(a.Hosts))
	t.RawSetString("by_pref", byPref)
	t.RawSetString("site_name", lua.LString(a.SiteName))
	t.RawSetString("is_domain_literal", lua.LBool(a.IsDomainLiteral))
	t.RawSetString("is_secure", lua.LBool(a.IsSecure))
	t.RawSetString("is_mx", lua.LBool(a.IsMX))
	return t
}

// openDNS builds the kumo.dns module.
func (st *state) openDNS() *lua.LTable {
	L := st.L
	t := L.NewTable()
	L.SetFuncs(t, map[string]lua.LGFunction{
		"lookup_mx":               st.dnsLookupMX,
		"lookup_addr":             st.dnsLookupAddr,
		"configure_resolver":      st.dnsConfigureResolver,
		"configure_test_resolver": st.dnsConfigureTestResolver,
		"lookup_ptr":              st.dnsLookupPTR,
		"lookup_txt":              st.dnsLookupTXT,
		"define_resolver":         st.dnsDefineResolver,
		"rbl_lookup":              st.dnsRBLLookup,
	})
	return t
}

func (st *state) dns(L *lua.LState, fn string) DNS {
	d := st.rt.opts.DNS
	if d == nil {
		L.RaiseError("kumo.dns.%s: kumo.dns is not configured in this process", fn)
	}
	return d
}

// dnsLookupMX is kumo.dns.lookup_mx(domain [, resolver]).
func (st *state) dnsLookupMX(L *lua.LState) int {
	domain := L.CheckString(1)
	res, err := st.dnsFor(L, 2, "lookup_mx").LookupMX(st.callCtx(), domain)
	if err != nil {
		L.RaiseError("kumo.dns.lookup_mx(%q): %s", domain, err.Error())
	}
	L.Push(res.table(L))
	return 1
}

// dnsLookupAddr is kumo.dns.lookup_addr(name [, resolver [, strategy]]);
// strategy Ipv4Only / Ipv6Only filters the answers.
func (st *state) dnsLookupAddr(L *lua.LState) int {
	name := L.CheckString(1)
	d := st.dnsFor(L, 2, "lookup_addr")
	strategy := L.OptString(3, "")
	switch strategy {
	case "", "Ipv4AndIpv6", "Ipv6thenIpv4", "Ipv4thenIpv6", "Ipv4Only", "Ipv6Only":
	default:
		L.ArgError(3, "unknown variant `"+strategy+"`, expected one of `Ipv4Only`, `Ipv6Only`, `Ipv4AndIpv6`, `Ipv6thenIpv4`, `Ipv4thenIpv6`")
	}
	addrs, err := d.LookupAddr(st.callCtx(), name)
	if err != nil {
		L.RaiseError("kumo.dns.lookup_addr(%q): %s", name, err.Error())
	}
	t := L.CreateTable(len(addrs), 0)
	for _, a := range addrs {
		if strategy == "Ipv4Only" || strategy == "Ipv6Only" {
			ip, err := netip.ParseAddr(a)
			if err == nil && ip.Unmap().Is4() != (strategy == "Ipv4Only") {
				continue
			}
		}
		t.Append(lua.LString(a))
	}
	L.Push(t)
	return 1
}

// dnsConfigureResolver is kumo.dns.configure_resolver{name_servers={...},
// domain?, search?, options?}; it is allowed in init only. Name servers
// are "ip", "ip:port" or {socket_addr="ip:port", protocol="udp"|"tcp"}.
func (st *state) dnsConfigureResolver(L *lua.LState) int {
	if st.event != event.Init && st.event != event.PreInit {
		where := st.event
		if where == "" {
			where = "the top level of the policy"
		} else {
			where = "the " + where + " event"
		}
		L.RaiseError("kumo.dns.configure_resolver may only be called from the init event, not from %s", where)
	}
	servers, err := decodeResolverConfig(st.tableArg(L))
	if err != nil {
		L.RaiseError("configure_resolver: %s", err.Error())
	}
	if st.rt.opts.Validating {
		return 0
	}
	if err := st.dns(L, "configure_resolver").Configure(servers); err != nil {
		L.RaiseError("configure_resolver: %s", err.Error())
	}
	return 0
}

// decodeResolverConfig decodes a configure_resolver table into "ip:port"
// name server addresses.
func decodeResolverConfig(v any) ([]string, error) {
	o := config.NewObject(v, v, "struct ResolverConfig", "name_servers", "domain", "search", "options")
	var domain string
	var search []string
	var options map[string]any
	o.Str("domain", &domain)
	o.StrList("search", &search)
	o.Map("options", &options)
	var servers []string
	ns, ok := o.Get("name_servers")
	if !ok && o.Err() == nil {
		o.Fail("missing field `name_servers`")
	}
	if ok {
		items, isSeq := ns.([]any)
		if !isSeq {
			if m, isMap := ns.(map[string]any); !isMap || len(m) != 0 {
				o.Fail("invalid type: " + config.Describe(ns) + ", expected a sequence of name servers")
			}
		}
		for _, it := range items {
			var s string
			switch x := it.(type) {
			case string:
				s = x
			case map[string]any:
				e := config.NewObject(x, o.Input(), "struct NameServerConfig", "socket_addr", "protocol", "tls_dns_name", "trust_negative_responses", "bind_addr")
				e.Str("socket_addr", &s)
				proto := "udp"
				e.Enum("protocol", &proto, "udp", "tcp")
				var ignored string
				var b bool
				e.Str("tls_dns_name", &ignored)
				e.Bool("trust_negative_responses", &b)
				e.Str("bind_addr", &ignored)
				if e.Err() == nil && s == "" {
					e.Fail("missing field `socket_addr`")
				}
				o.Merge(e)
			default:
				o.Fail("invalid type: " + config.Describe(it) + ", expected a name server address string or {socket_addr=...}")
			}
			if o.Err() != nil {
				break
			}
			addr, err := nameServerAddr(s)
			if err != nil {
				o.Fail("invalid value: " + config.Describe(s) + ", expected " + err.Error())
				break
			}
			servers = append(servers, addr)
		}
	}
	if o.Err() != nil {
		return nil, o.Err()
	}
	return servers, nil
}

// nameServerAddr normalizes "ip" or "ip:port" (port 53 by default).
func nameServerAddr(s string) (string, error) {
	if ip, err := netip.ParseAddr(s); err == nil {
		return netip.AddrPortFrom(ip, 53).String(), nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil || ap.Port() == 0 {
		return "", fmt.Errorf("an IP address or ip:port")
	}
	return ap.String(), nil
}
