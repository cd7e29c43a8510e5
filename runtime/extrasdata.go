package runtime

import (
	"net/mail"
	"os"
	"strings"
	"sync"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/kumogo/kumogo/internal/datafile"
	"github.com/kumogo/kumogo/internal/message"
)

// extrasData lets the bundled policy-extras helpers share the data they
// build from their data files between Lua states. A helper's data is
// built once (parsing files and checking every option costs milliseconds)
// and each new Lua state gets a copy instead of rebuilding it; the copy is
// rebuilt when a data file changes (size or modification time) or the
// entry is older than its time to live (KumoMTA's helpers memoize their
// data with the same times to live). It is the internal module
// 'kumogo.extras_data', not a KumoMTA API.
type extrasData struct {
	mu sync.Mutex
	m  map[string]*extrasEntry
}

type extrasEntry struct {
	value   any
	stamps  []fileStamp
	expires time.Time

	// plan is what a helper's per-message fast path (extrasfast.go)
	// derives from value, built once per entry and shared by the states.
	planMu sync.Mutex
	plan   any
}

// derived returns the entry's plan, building it with build the first
// time.
func (e *extrasEntry) derived(build func(any) (any, error)) (any, error) {
	e.planMu.Lock()
	defer e.planMu.Unlock()
	if e.plan == nil {
		p, err := build(e.value)
		if err != nil {
			return nil, err
		}
		e.plan = p
	}
	return e.plan, nil
}

type fileStamp struct {
	path  string
	size  int64
	mtime time.Time
	ok    bool
}

func stampFiles(paths []string) []fileStamp {
	out := make([]fileStamp, len(paths))
	for i, p := range paths {
		out[i].path = p
		if fi, err := os.Stat(p); err == nil {
			out[i].size, out[i].mtime, out[i].ok = fi.Size(), fi.ModTime(), true
		}
	}
	return out
}

func sameStamps(a, b []fileStamp) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// lookup returns the entry for key when it is fresh for these files, or
// nil.
func (d *extrasData) lookup(key string, stamps []fileStamp, now time.Time) *extrasEntry {
	d.mu.Lock()
	defer d.mu.Unlock()
	e := d.m[key]
	if e == nil || now.After(e.expires) || !sameStamps(e.stamps, stamps) {
		return nil
	}
	return e
}

// reset drops every entry, so that the next use rebuilds it; a config
// epoch bump should call it (KumoMTA's helpers memoize their data with
// invalidate_with_epoch).
func (d *extrasData) reset() {
	d.mu.Lock()
	d.m = nil
	d.mu.Unlock()
}

func (d *extrasData) store(key string, v any, stamps []fileStamp, expires time.Time) *extrasEntry {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.m == nil {
		d.m = map[string]*extrasEntry{}
	}
	e := &extrasEntry{value: v, stamps: stamps, expires: expires}
	d.m[key] = e
	return e
}

// openExtrasData builds the 'kumogo.extras_data' module: get(key, files,
// ttl_seconds, loader) returns the shared data for key, calling loader()
// in this state to (re)build it. files lists the data files whose changes
// invalidate the entry (entries that are not strings are ignored).
func (st *state) openExtrasData() *lua.LTable {
	t := st.L.NewTable()
	t.RawSetString("get", st.L.NewFunction(st.extrasDataGet))
	t.RawSetString("from_domain", st.L.NewFunction(st.extrasFromDomain))
	t.RawSetString("from_domain_lookup", st.L.NewFunction(st.extrasFromDomainLookup))
	t.RawSetString("key_line", st.L.NewFunction(extrasKeyLine))
	t.RawSetString("queue_fields", st.L.NewFunction(st.extrasQueueFields))
	t.RawSetString("cell", st.L.NewFunction(st.extrasCellNew))
	t.RawSetString("queue_applier", st.L.NewFunction(st.extrasQueueApplier))
	t.RawSetString("dkim_signer", st.L.NewFunction(st.extrasDKIMSigner))
	return t
}

// extrasQueueFields is queue_fields(msg, campaign_header, tenant_header,
// want_domain): the first value of each header (nil when absent or when
// the name is nil) and, when want_domain is true, the first recipient's
// domain. A campaign found in its header is also set as the message's
// campaign meta, as the queue helper does. The queue helper does this for
// every message; one call instead of four method calls and an address
// object.
func (st *state) extrasQueueFields(L *lua.LState) int {
	m := st.checkMessage(L)
	for i := 2; i <= 3; i++ {
		name, ok := L.Get(i).(lua.LString)
		if !ok {
			L.Push(lua.LNil)
			continue
		}
		if v, ok := st.headerLString(m, string(name)); ok {
			if i == 2 {
				m.SetMeta("campaign", st.boxString(string(v.(lua.LString))))
			}
			L.Push(v)
		} else {
			L.Push(lua.LNil)
		}
	}
	if rs := m.Recipients(); lua.LVAsBool(L.Get(4)) && len(rs) > 0 {
		L.Push(st.lstring(rs[0].Domain))
	} else {
		L.Push(lua.LNil)
	}
	return 3
}

// extrasKeyLine is key_line(file, key, ...): the line of a key path in a
// TOML data file, or nil (other formats, unknown keys), so that the
// helpers' errors name the line.
func extrasKeyLine(L *lua.LState) int {
	file := L.CheckString(1)
	var path []string
	for i := 2; i <= L.GetTop(); i++ {
		path = append(path, L.CheckString(i))
	}
	if datafile.FormatOf(file) == datafile.TOML {
		if b, err := os.ReadFile(file); err == nil {
			if line := datafile.TOMLKeyLine(b, path...); line > 0 {
				L.Push(lua.LNumber(line))
				return 1
			}
		}
	}
	L.Push(lua.LNil)
	return 1
}

// extrasFromDomain is from_domain(msg): the domain of the first mailbox of
// the From header, as msg:from_header().domain gives it, or nil. The DKIM
// helper calls it for every message, so the common forms ("addr" and
// "Name <addr>") are read without a full address-list parse.
func (st *state) extrasFromDomain(L *lua.LState) int {
	raw, ok := st.checkMessage(L).FirstHeaderRaw("From")
	if !ok {
		L.Push(lua.LNil)
		return 1
	}
	if d, ok := st.strs.fromDomain[string(raw)]; ok {
		L.Push(d)
		return 1
	}
	var d lua.LValue = lua.LNil
	v := message.DecodeHeaderValue(raw)
	if s, ok := simpleFromDomain(v); ok {
		d = lua.LString(s)
	} else if addrs, err := mail.ParseAddressList(v); err == nil && len(addrs) > 0 {
		a := addrs[0].Address
		d = lua.LString(a[strings.LastIndexByte(a, '@')+1:])
	}
	st.strs.fromDomain = cacheLValue(st.strs.fromDomain, string(raw), d)
	L.Push(d)
	return 1
}

// extrasFromDomainLookup is from_domain_lookup(msg, domain_map): the From
// domain (as from_domain) and what domain_map holds for it (nil when
// nothing matches). The DKIM helper's per-message lookup in one call.
func (st *state) extrasFromDomainLookup(L *lua.LState) int {
	dm, ok := L.CheckUserData(2).Value.(*domainMap)
	if !ok {
		L.ArgError(2, "domain map expected")
	}
	L.SetTop(1)
	st.extrasFromDomain(L)
	d, ok := L.Get(-1).(lua.LString)
	if !ok {
		L.Push(lua.LNil)
		return 2
	}
	if v, ok := dm.get(string(d)); ok {
		L.Push(st.fromGo(v))
	} else {
		L.Push(lua.LNil)
	}
	return 2
}

// simpleFromDomain reads the domain of "user@domain" or "Name
// <user@domain>" (no quotes, comments, groups or lists); ok is false for
// anything else.
func simpleFromDomain(v string) (string, bool) {
	if strings.ContainsAny(v, ",\"();:\\[]") || strings.Count(v, "@") != 1 {
		return "", false
	}
	v = strings.TrimSpace(v)
	if lt := strings.IndexByte(v, '<'); lt >= 0 {
		if !strings.HasSuffix(v, ">") || strings.Count(v, "<") != 1 {
			return "", false
		}
		v = v[lt+1 : len(v)-1]
	} else if strings.ContainsAny(v, ">") {
		return "", false
	}
	at := strings.IndexByte(v, '@')
	user, domain := v[:at], v[at+1:]
	if user == "" || domain == "" || strings.ContainsAny(v, " \t\r\n") {
		return "", false
	}
	return domain, true
}

func (st *state) extrasDataGet(L *lua.LState) int {
	key := L.CheckString(1)
	files := L.CheckTable(2)
	ttl := time.Duration(float64(L.CheckNumber(3)) * float64(time.Second))
	loader := L.CheckFunction(4)
	var paths []string
	files.ForEach(func(_, v lua.LValue) {
		if s, ok := v.(lua.LString); ok {
			paths = append(paths, string(s))
		}
	})
	e, lv := st.extrasEntryFor(L, key, paths, ttl, loader)
	if lv == nil {
		lv = st.fromGo(e.value)
	}
	L.Push(lv)
	return 1
}
