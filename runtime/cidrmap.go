package runtime

import (
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"
	"sync"

	lua "github.com/yuin/gopher-lua"
)

// cidrMap is kumo.cidr.make_map (KumoMTA's kumo.cidr/make_map page): a
// dictionary keyed by IP network. Keys are addresses or CIDR blocks
// (strict: host bits must be zero); a lookup by address returns the value
// of the most specific block that contains it. Keys and lookups also
// accept "[ip]", "ip:port" and "[ip]:port".
type cidrMap struct {
	mu      sync.RWMutex
	entries []cidrEntry // most specific first
}

type cidrEntry struct {
	net netip.Prefix
	val any
}

// parseCIDRKey parses a map key: an address (a single-address block) or a
// CIDR block.
func parseCIDRKey(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		if p.Masked() != p {
			return netip.Prefix{}, fmt.Errorf("%s: host bits are set (the network is %s)", s, p.Masked())
		}
		if p.Addr().Is4In6() {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		return p, nil
	}
	a, err := parseIPKey(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// parseIPKey parses "ip", "[ip]", "ip:port" or "[ip]:port".
func parseIPKey(s string) (netip.Addr, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap(), nil
	}
	if host, _, err := net.SplitHostPort(s); err == nil {
		s = host // "ip:port", "[ip]:port" ("[v4]:port" too)
		if a, err := netip.ParseAddr(s); err == nil {
			return a.Unmap(), nil
		}
	}
	if inner, ok := strings.CutPrefix(s, "["); ok {
		if inner, ok := strings.CutSuffix(inner, "]"); ok {
			if a, err := netip.ParseAddr(inner); err == nil {
				return a.Unmap(), nil
			}
		}
	}
	return netip.Addr{}, fmt.Errorf("%q is not an IP address", s)
}

func (m *cidrMap) set(p netip.Prefix, v any) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, e := range m.entries {
		if e.net == p {
			if v == nil {
				m.entries = append(m.entries[:i], m.entries[i+1:]...)
			} else {
				m.entries[i].val = v
			}
			return
		}
	}
	if v == nil {
		return
	}
	m.entries = append(m.entries, cidrEntry{p, v})
	sort.SliceStable(m.entries, func(i, j int) bool { return m.entries[i].net.Bits() > m.entries[j].net.Bits() })
}

func (m *cidrMap) get(a netip.Addr) (any, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	for _, e := range m.entries {
		if e.net.Contains(a) {
			return e.val, true
		}
	}
	return nil, false
}

func (m *cidrMap) toLua(st *state) lua.LValue {
	return &lua.LUserData{Value: m, Metatable: st.cidrMapMT()}
}

// openCIDR builds the kumo.cidr module.
func (st *state) openCIDR() *lua.LTable {
	t := st.L.NewTable()
	t.RawSetString("make_map", st.L.NewFunction(st.cidrMakeMap))
	return t
}

// cidrMakeMap is kumo.cidr.make_map([table]).
func (st *state) cidrMakeMap(L *lua.LState) int {
	m := &cidrMap{}
	if L.GetTop() >= 1 && L.Get(1) != lua.LNil {
		var failure string
		L.CheckTable(1).ForEach(func(k, v lua.LValue) {
			if failure != "" {
				return
			}
			p, err := parseCIDRKey(lua.LVAsString(k))
			if err != nil {
				failure = err.Error()
				return
			}
			gv, err := st.toGo(v)
			if err != nil {
				failure = err.Error()
				return
			}
			m.set(p, gv)
		})
		if failure != "" {
			L.RaiseError("kumo.cidr.make_map: %s", failure)
		}
	}
	L.Push(m.toLua(st))
	return 1
}

// cidrMapMT returns the metatable of CIDR map userdata.
func (st *state) cidrMapMT() *lua.LTable {
	L := st.L
	mt := L.NewTypeMetatable("kumo.cidr_map")
	if mt.RawGetString("__index") != lua.LNil {
		return mt
	}
	check := func(L *lua.LState) *cidrMap { return checkSelf[*cidrMap](L, "CIDR map expected") }
	mt.RawSetString("__name", lua.LString("CidrMap"))
	mt.RawSetString("__index", L.NewFunction(func(L *lua.LState) int {
		m := check(L)
		// A key that is not an address (or is a CIDR block) finds
		// nothing, as KumoMTA's lookup does.
		a, err := parseIPKey(lua.LVAsString(L.Get(2)))
		if err != nil {
			L.Push(lua.LNil)
			return 1
		}
		v, ok := m.get(a)
		if !ok {
			L.Push(lua.LNil)
			return 1
		}
		L.Push(st.fromGo(v))
		return 1
	}))
	mt.RawSetString("__newindex", L.NewFunction(func(L *lua.LState) int {
		m := check(L)
		p, err := parseCIDRKey(lua.LVAsString(L.Get(2)))
		if err != nil {
			L.RaiseError("CIDR map: %s", err.Error())
		}
		v, err := st.toGo(L.Get(3))
		if err != nil {
			L.RaiseError("CIDR map: %s", err.Error())
		}
		m.set(p, v)
		return 0
	}))
	mt.RawSetString("__len", L.NewFunction(func(L *lua.LState) int {
		m := check(L)
		m.mu.RLock()
		n := len(m.entries)
		m.mu.RUnlock()
		L.Push(lua.LNumber(n))
		return 1
	}))
	return mt
}
