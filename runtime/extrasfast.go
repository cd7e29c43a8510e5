package runtime

import (
	"fmt"
	"strings"
	"sync"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/kumogo/kumogo/internal/message"
	"github.com/kumogo/kumogo/internal/smtpreply"
)

// The per-message paths of the bundled policy-extras helpers in Go. The
// queue helper's apply and the DKIM helper's signer run for every
// message; written in Lua they cost several microseconds of interpreter
// time (a dozen calls and a hundred table lookups), which is most of what
// a policy built on the helpers adds to sink.lua. Here each is one Go
// call from the policy; what is rare (resolving a routing domain the
// first time, signing) stays in the helpers' Lua, which the Go code calls
// back. The Lua data the helpers load is unchanged: these functions read
// it.

// extrasCell is one Lua state's handle on a helper's shared data (the
// policy-extras kumogo module's cached): the extrasData entry for key,
// looked up again at most every recheck seconds, and only on every 16th
// call, so that per message it costs a counter. The entry's value is
// turned into Lua tables in this state only when Lua code asks for it
// (get): the fast paths read the entry's Go plan instead, so that a new
// state does not copy the data for every message it handles.
type extrasCell struct {
	key     string
	paths   []string
	ttl     time.Duration
	recheck int64
	load    *lua.LFunction
	entry   *extrasEntry // nil until loaded
	lval    lua.LValue   // entry.value in this state, nil until asked for
	checked int64
	calls   int
	// the plan of planFor (plan): one helper's, kept here so that a
	// message does not take the entry's lock
	planFor *extrasEntry
	planV   any
}

// current returns the cell's entry, (re)loading it as extrasData says.
func (c *extrasCell) current(st *state, L *lua.LState) *extrasEntry {
	c.calls++
	if c.entry == nil || c.calls >= 16 {
		c.calls = 0
		now := time.Now().Unix()
		if c.entry == nil || now-c.checked >= c.recheck {
			e, lv := st.extrasEntryFor(L, c.key, c.paths, c.ttl, c.load)
			if e != c.entry {
				c.entry, c.lval = e, lv
			}
			c.checked = now
		}
	}
	return c.entry
}

// get returns the cell's data as a Lua value.
func (c *extrasCell) get(st *state, L *lua.LState) lua.LValue {
	e := c.current(st, L)
	if c.lval == nil {
		c.lval = st.fromGo(e.value)
	}
	return c.lval
}

// extrasEntryFor returns the shared entry for key (extrasData), calling
// loader in this state to (re)build it; then lv is the loader's result
// (else nil).
func (st *state) extrasEntryFor(L *lua.LState, key string, paths []string, ttl time.Duration, loader *lua.LFunction) (e *extrasEntry, lv lua.LValue) {
	stamps := stampFiles(paths)
	now := time.Now()
	if e := st.rt.extras.lookup(key, stamps, now); e != nil {
		return e, nil
	}
	L.Push(loader)
	L.Call(0, 1)
	result := L.Get(-1)
	L.Pop(1)
	v, err := st.toGo(result)
	if err != nil {
		L.RaiseError("kumogo.extras_data: %s: %s", key, err.Error())
	}
	return st.rt.extras.store(key, v, stamps, now.Add(ttl)), result
}

// extrasCellNew is cell(key, files, ttl_seconds, loader): returns get (a
// function returning the data) and the cell, for the fast paths below.
func (st *state) extrasCellNew(L *lua.LState) int {
	c := &extrasCell{key: L.CheckString(1)}
	L.CheckTable(2).ForEach(func(_, v lua.LValue) {
		if s, ok := v.(lua.LString); ok {
			c.paths = append(c.paths, string(s))
		}
	})
	ttl := float64(L.CheckNumber(3))
	c.ttl = time.Duration(ttl * float64(time.Second))
	c.recheck = 10
	if ttl < 10 {
		c.recheck = int64(ttl)
	}
	c.load = L.CheckFunction(4)
	L.Push(L.NewFunction(func(L *lua.LState) int {
		L.Push(c.get(st, L))
		return 1
	}))
	L.Push(&lua.LUserData{Value: c})
	return 2
}

// plan returns the cell's current entry's plan (extrasEntry.derived).
func (c *extrasCell) plan(st *state, L *lua.LState, build func(any) (any, error)) any {
	e := c.current(st, L)
	if e == c.planFor {
		return c.planV
	}
	p, err := e.derived(build)
	if err == nil {
		c.planFor, c.planV = e, p
	}
	if err != nil {
		helper, _, _ := strings.Cut(c.key, "\x00")
		L.RaiseError("%s: %s", helper, err.Error())
	}
	return p
}

func checkCell(L *lua.LState, n int) *extrasCell {
	c, ok := L.CheckUserData(n).Value.(*extrasCell)
	if !ok {
		L.ArgError(n, "extras cell expected")
	}
	return c
}

// queuePlan is what the queue helper's apply reads of its data, taken
// out of the data once per entry and shared by the states, with the
// routing domains resolved so far.
type queuePlan struct {
	schedHdr                     string
	campaignHdr, tenantHdr       string
	removeCampaign, removeTenant bool
	defaultTenant                string
	hasDefault                   bool
	tenants                      map[string]tenantPlan
	hasRouting                   bool

	mu      sync.RWMutex
	routing map[routeKey]string // "" for none
}

type tenantPlan struct {
	authz []string // require_authz; nil when not required
}

type routeKey struct{ domain, tenant, campaign string }

// maxRouteCache bounds the routing domains a plan keeps.
const maxRouteCache = 4096

func newQueuePlan(v any) (any, error) {
	data, _ := v.(map[string]any)
	top, _ := data["top"].(map[string]any)
	tenants, _ := data["tenants"].(map[string]any)
	if data == nil || top == nil {
		return nil, fmt.Errorf("malformed data")
	}
	str := func(k string) string { s, _ := top[k].(string); return s }
	flag := func(k string) bool { b, _ := top[k].(bool); return b }
	p := &queuePlan{
		schedHdr:       str("scheduling_header"),
		campaignHdr:    str("campaign_header"),
		tenantHdr:      str("tenant_header"),
		removeCampaign: flag("remove_campaign_header"),
		removeTenant:   flag("remove_tenant_header"),
		defaultTenant:  str("default_tenant"),
		tenants:        make(map[string]tenantPlan, len(tenants)),
	}
	p.hasRouting, _ = data["has_routing"].(bool)
	_, p.hasDefault = top["default_tenant"].(string)
	for name, t := range tenants {
		var tp tenantPlan
		tm, _ := t.(map[string]any)
		extras, _ := tm["extras"].(map[string]any)
		if list, ok := extras["require_authz"].([]any); ok {
			tp.authz = make([]string, 0, len(list))
			for _, x := range list {
				s, _ := x.(string)
				tp.authz = append(tp.authz, s)
			}
		} else if _, ok := extras["require_authz"].(map[string]any); ok {
			tp.authz = []string{} // an empty list: nobody
		}
		p.tenants[name] = tp
	}
	return p, nil
}

func (p *queuePlan) route(k routeKey) (string, bool) {
	p.mu.RLock()
	r, ok := p.routing[k]
	p.mu.RUnlock()
	return r, ok
}

func (p *queuePlan) remember(k routeKey, r string) {
	p.mu.Lock()
	if p.routing == nil || len(p.routing) >= maxRouteCache {
		p.routing = make(map[routeKey]string)
	}
	p.routing[k] = r
	p.mu.Unlock()
}

// extrasQueueApplier is queue_applier(cell, resolve): the queue helper's
// apply(self, msg) for the data of cell, as one Go function.
// resolve(data, domain, tenant, campaign) returns the routing domain (or
// nil) for a combination not seen before.
func (st *state) extrasQueueApplier(L *lua.LState) int {
	a := &queueApplier{st: st, cell: checkCell(L, 1), resolve: L.CheckFunction(2)}
	L.Push(L.NewFunction(func(L *lua.LState) int {
		L.Remove(1) // self
		m := st.checkMessage(L)
		p := a.cell.plan(st, L, newQueuePlan).(*queuePlan)
		if p != a.plan {
			a.plan, a.routes = p, nil
		}
		a.apply(L, p, m)
		return 0
	}))
	return 1
}

// queueApplier is one state's apply: the plan it last used and the
// routing domains it has looked up in it (without the plan's lock).
type queueApplier struct {
	st      *state
	cell    *extrasCell
	resolve *lua.LFunction
	plan    *queuePlan
	routes  map[routeKey]string
}

// route returns the routing domain for k ("" for none): from this
// state's map, else the plan's, else resolve's answer, remembered in both.
func (a *queueApplier) route(L *lua.LState, p *queuePlan, k routeKey, tenant, campaign lua.LValue) string {
	if r, ok := a.routes[k]; ok {
		return r
	}
	r, ok := p.route(k)
	if !ok {
		r = a.callResolve(L, k.domain, tenant, campaign)
		p.remember(k, r)
	}
	if a.routes == nil || len(a.routes) >= maxRouteCache {
		a.routes = make(map[routeKey]string)
	}
	a.routes[k] = r
	return r
}

// callResolve is resolve(data, domain, tenant, campaign) in Lua.
func (a *queueApplier) callResolve(L *lua.LState, domain string, tenant, campaign lua.LValue) string {
	st := a.st
	L.Push(a.resolve)
	L.Push(a.cell.get(st, L))
	L.Push(st.lstring(domain))
	L.Push(tenant)
	L.Push(campaign)
	L.Call(4, 1)
	v := L.Get(-1)
	L.Pop(1)
	if s, ok := v.(lua.LString); ok {
		return string(s)
	}
	if v != lua.LNil && v != lua.LFalse {
		L.RaiseError("policy-extras.queue: routing_domain must be a string, not a %s", v.Type().String())
	}
	return ""
}

func (a *queueApplier) apply(L *lua.LState, p *queuePlan, m *message.Message) {
	st := a.st
	msgUD := L.Get(1)
	if p.schedHdr != "" {
		L.Push(L.NewFunction(st.msgImportSchedulingHeader))
		L.Push(msgUD)
		L.Push(lua.LString(p.schedHdr))
		L.Push(lua.LTrue)
		L.Call(3, 0)
	}
	var campaign lua.LValue = lua.LNil
	var tenant string
	craw, cok, traw, tok := m.FirstHeadersRaw(p.campaignHdr, p.tenantHdr)
	if cok {
		campaign = st.headerValue(craw)
		m.SetMeta("campaign", st.boxString(string(campaign.(lua.LString))))
		if p.removeCampaign {
			m.RemoveAllNamedHeaders(p.campaignHdr)
		}
	}
	if tok {
		tenant = string(st.headerValue(traw).(lua.LString))
		if p.removeTenant {
			m.RemoveAllNamedHeaders(p.tenantHdr)
		}
	} else {
		tenant = p.defaultTenant
	}
	hasTenant := tok || p.hasDefault
	if hasTenant {
		t, ok := p.tenants[tenant]
		if !ok {
			source := "default_tenant option"
			if tok {
				source = fmt.Sprintf("'%s' header", p.tenantHdr)
			}
			st.raiseRejection(L, &smtpreply.Rejection{Code: 500, Mode: smtpreply.If421,
				Text: fmt.Sprintf("tenant '%s' specified by %s is not defined in your queue config", tenant, source)})
		}
		if t.authz != nil {
			v, _ := m.Meta("authz_id")
			who := st.fromGo(v)
			if !lua.LVAsBool(who) {
				st.raiseRejection(L, &smtpreply.Rejection{Code: 500, Mode: smtpreply.If421,
					Text: fmt.Sprintf("tenant '%s' requires SMTP AUTH", tenant)})
			}
			found := false
			if s, ok := who.(lua.LString); ok {
				for _, a := range t.authz {
					found = found || a == string(s)
				}
			}
			if !found {
				st.raiseRejection(L, &smtpreply.Rejection{Code: 500, Mode: smtpreply.If421,
					Text: fmt.Sprintf("authz_id '%s' is not authorized to send as tenant '%s'", lua.LVAsString(who), tenant)})
			}
		}
		boxed := st.boxString(tenant)
		old, had := m.Meta("tenant")
		holdValue(L, "tenant", lua.LString(tenant), old, had)
		m.SetMeta("tenant", boxed)
	}
	if !p.hasRouting {
		return
	}
	rs := m.Recipients()
	if len(rs) == 0 {
		return
	}
	domain := rs[0].Domain
	if campaign == lua.LNil {
		v, _ := m.Meta("campaign")
		campaign = st.fromGo(v)
	}
	var tv lua.LValue = lua.LNil
	if hasTenant {
		tv = st.lstring(tenant)
	}
	var routing string
	if cname, ok := campaign.(lua.LString); ok || campaign == lua.LNil {
		routing = a.route(L, p, routeKey{domain, tenant, string(cname)}, tv, campaign)
	} else {
		// a campaign meta that is not a string: not remembered
		routing = a.callResolve(L, domain, tv, campaign)
	}
	if routing != "" {
		old, had := m.Meta("routing_domain")
		holdValue(L, "routing_domain", lua.LString(routing), old, had)
		m.SetMeta("routing_domain", st.boxString(routing))
	}
}

// dkimPlan is what the DKIM helper's signer reads of its data.
type dkimPlan struct {
	domains  *domainMap
	hasExtra bool
}

func newDKIMPlan(v any) (any, error) {
	data, _ := v.(map[string]any)
	dm, _ := data["domain_map"].(*domainMap)
	if dm == nil {
		return nil, fmt.Errorf("malformed data")
	}
	base, _ := data["base"].(map[string]any)
	_, hasExtra := base["additional_signatures"]
	return &dkimPlan{domains: dm, hasExtra: hasExtra}, nil
}

// extrasDKIMSigner is dkim_signer(cell, sign): the DKIM helper's signing
// function for the data of cell. The From domain and its block are found
// in Go; sign(msg, data, from_domain, block_key) is called only when
// there is something to sign.
func (st *state) extrasDKIMSigner(L *lua.LState) int {
	cell := checkCell(L, 1)
	sign := L.CheckFunction(2)
	var (
		forPlan *dkimPlan
		keys    map[lua.LString]lua.LValue // From domain -> its block's key (or LNil)
	)
	L.Push(L.NewFunction(func(L *lua.LState) int {
		L.SetTop(1)
		p := cell.plan(st, L, newDKIMPlan).(*dkimPlan)
		if p != forPlan {
			forPlan, keys = p, nil
		}
		st.extrasFromDomain(L) // pushes the From domain or nil
		from, ok := L.Get(2).(lua.LString)
		if !ok {
			st.raiseRejection(L, &smtpreply.Rejection{Code: 552, Mode: smtpreply.If421,
				Text: "5.6.0 DKIM signing requires a From header, but it is missing from this message"})
		}
		key, ok := keys[from]
		if !ok {
			key = lua.LNil
			if v, ok := p.domains.get(string(from)); ok {
				key = st.fromGo(v)
			}
			if keys == nil || len(keys) >= maxRouteCache {
				keys = make(map[lua.LString]lua.LValue)
			}
			keys[from] = key
		}
		if key == lua.LNil && !p.hasExtra {
			return 0
		}
		L.Push(sign)
		L.Push(L.Get(1))
		L.Push(cell.get(st, L))
		L.Push(from)
		L.Push(key)
		L.Call(4, 0)
		return 0
	}))
	return 1
}
