package runtime

import (
	"net"
	"net/netip"
	"strings"
	"sync"

	lua "github.com/yuin/gopher-lua"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/dnszone"
)

// DNSFactory is implemented by a DNS that can make further resolvers
// (kumo.dns.define_resolver).
type DNSFactory interface {
	NewResolver(servers []string) (DNS, error)
}

// namedResolvers are the resolvers of kumo.dns.define_resolver, by name,
// shared by all states.
type namedResolvers struct {
	mu sync.Mutex
	m  map[string]DNS
}

func (n *namedResolvers) get(name string) (DNS, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	d, ok := n.m[name]
	return d, ok
}

func (n *namedResolvers) set(name string, d DNS) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.m == nil {
		n.m = make(map[string]DNS)
	}
	n.m[name] = d
}

// dnsFor is the resolver named by argument n (a define_resolver name), or
// the default one when it is nil.
func (st *state) dnsFor(L *lua.LState, n int, fn string) DNS {
	v := L.Get(n)
	if v == lua.LNil {
		return st.dns(L, fn)
	}
	name, ok := v.(lua.LString)
	if !ok {
		L.ArgError(n, "a resolver name expected")
	}
	d, ok := st.rt.resolvers.get(string(name))
	if !ok {
		L.RaiseError("kumo.dns.%s: resolver %q is not defined (kumo.dns.define_resolver)", fn, string(name))
	}
	return d
}

// dnsDefineResolver is kumo.dns.define_resolver(NAME, CONFIG): CONFIG is
// {Hickory = <configure_resolver table>} or {Test = {zones = {...}}}
// (KumoMTA's define_resolver page).
func (st *state) dnsDefineResolver(L *lua.LState) int {
	name := L.CheckString(1)
	v, err := st.toGo(L.CheckTable(2))
	if err != nil {
		L.ArgError(2, err.Error())
	}
	o := config.NewObject(v, v, "enum ResolverConfig", "Hickory", "Test")
	var servers []string
	var zones *dnszone.Zones
	if h, ok := o.Get("Hickory"); ok {
		servers, err = decodeResolverConfig(h)
		if err != nil {
			o.Fail(err.Error())
		}
	}
	if tv, ok := o.Get("Test"); ok {
		to := config.NewObject(tv, v, "struct TestResolverConfig", "zones")
		var texts []string
		to.StrList("zones", &texts)
		o.Merge(to)
		if o.Err() == nil {
			if zones, err = dnszone.Parse(texts); err != nil {
				o.Fail(err.Error())
			}
		}
	}
	if o.Err() == nil && o.Len() != 1 {
		o.Fail("expected exactly one of `Hickory` or `Test`")
	}
	if o.Err() != nil {
		L.RaiseError("kumo.dns.define_resolver(%q): %s", name, o.Err().Error())
	}
	if st.rt.opts.Validating {
		return 0
	}
	f, ok := st.dns(L, "define_resolver").(DNSFactory)
	if !ok {
		L.RaiseError("kumo.dns.define_resolver: this process's resolver cannot make others")
	}
	if zones != nil {
		srv, err := dnszone.Serve(zones)
		if err != nil {
			L.RaiseError("kumo.dns.define_resolver(%q): %s", name, err.Error())
		}
		st.rt.own(srv)
		servers = []string{srv.Addr}
	}
	d, err := f.NewResolver(servers)
	if err != nil {
		L.RaiseError("kumo.dns.define_resolver(%q): %s", name, err.Error())
	}
	st.rt.resolvers.set(name, d)
	return 0
}

// dnsRBLLookup is kumo.dns.rbl_lookup(IP, BASE_DOMAIN [, RESOLVER]): the
// address the DNSBL gives for IP and its TXT reason, or nil, nil when IP
// is not listed. IP may carry a port.
func (st *state) dnsRBLLookup(L *lua.LState) int {
	s := L.CheckString(1)
	base := strings.Trim(L.CheckString(2), ".")
	d := st.dnsFor(L, 3, "rbl_lookup")
	if h, _, err := net.SplitHostPort(s); err == nil {
		s = h
	}
	ip, err := netip.ParseAddr(strings.Trim(s, "[]"))
	if err != nil {
		L.ArgError(1, "an IP address expected")
	}
	name := reverseLabels(ip.Unmap()) + "." + base
	addrs, err := d.LookupAddr(st.callCtx(), name)
	if err != nil || len(addrs) == 0 {
		// NXDOMAIN is "not listed"
		L.Push(lua.LNil)
		L.Push(lua.LNil)
		return 2
	}
	L.Push(lua.LString(addrs[0]))
	if rec, ok := d.(DNSRecords); ok {
		if txt, err := rec.LookupTXT(st.callCtx(), name); err == nil && len(txt) > 0 {
			L.Push(lua.LString(txt[0]))
			return 2
		}
	}
	L.Push(lua.LNil)
	return 2
}

// reverseLabels is ip in DNSBL order: reversed octets (IPv4) or nibbles
// (IPv6), without a suffix.
func reverseLabels(ip netip.Addr) string {
	b := ip.AsSlice()
	var parts []string
	for i := len(b) - 1; i >= 0; i-- {
		if ip.Is4() {
			parts = append(parts, itoa(int(b[i])))
		} else {
			const hex = "0123456789abcdef"
			parts = append(parts, string(hex[b[i]&0xf]), string(hex[b[i]>>4]))
		}
	}
	return strings.Join(parts, ".")
}

func itoa(n int) string {
	if n < 10 {
		return string(rune('0' + n))
	}
	return itoa(n/10) + string(rune('0'+n%10))
}
