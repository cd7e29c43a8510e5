package runtime

import (
	"context"
	"net/netip"

	lua "github.com/yuin/gopher-lua"
)

// DNSRecords is implemented by a DNS that also serves PTR and TXT
// lookups (kumo.dns.lookup_ptr, kumo.dns.lookup_txt).
type DNSRecords interface {
	LookupPTR(ctx context.Context, ip netip.Addr) ([]string, error)
	LookupTXT(ctx context.Context, name string) ([]string, error)
}

func (st *state) dnsRecords(L *lua.LState, n int, fn string) DNSRecords {
	d, ok := st.dnsFor(L, n, fn).(DNSRecords)
	if !ok {
		L.RaiseError("kumo.dns.%s: this process's resolver does not serve it", fn)
	}
	return d
}

func (st *state) pushStrings(L *lua.LState, ss []string) {
	t := L.CreateTable(len(ss), 0)
	for _, s := range ss {
		t.Append(lua.LString(s))
	}
	L.Push(t)
}

// dnsLookupPTR is kumo.dns.lookup_ptr(IP [, resolver]): the PTR names.
func (st *state) dnsLookupPTR(L *lua.LState) int {
	s := L.CheckString(1)
	ip, err := netip.ParseAddr(s)
	if err != nil {
		L.ArgError(1, "an IP address expected")
	}
	names, err := st.dnsRecords(L, 2, "lookup_ptr").LookupPTR(st.callCtx(), ip)
	if err != nil {
		L.RaiseError("kumo.dns.lookup_ptr(%q): %s", s, err.Error())
	}
	st.pushStrings(L, names)
	return 1
}

// dnsLookupTXT is kumo.dns.lookup_txt(NAME [, resolver]).
func (st *state) dnsLookupTXT(L *lua.LState) int {
	name := L.CheckString(1)
	txt, err := st.dnsRecords(L, 2, "lookup_txt").LookupTXT(st.callCtx(), name)
	if err != nil {
		L.RaiseError("kumo.dns.lookup_txt(%q): %s", name, err.Error())
	}
	st.pushStrings(L, txt)
	return 1
}
