package runtime

import (
	"fmt"
	"math"
	"strconv"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/kumogo/kumogo/internal/config"
	lua "github.com/yuin/gopher-lua"
	"golang.org/x/sync/singleflight"
)

// memoCaches are the process-wide caches of kumo.memoize, by name: every
// Lua state that runs the policy's kumo.memoize(fn, {name=...}) shares
// the named cache (KumoMTA's kumo.memoize page).
type memoCaches struct {
	mu     sync.Mutex
	byName map[string]*memoCache
}

// memoCache is one named cache. Values are kept as Go values (toGo) so
// that any state can read them; each state keeps the Lua value it made
// from an entry (keyed by the entry), so a hit returns without
// converting or allocating.
type memoCache struct {
	ttl         time.Duration
	fill        singleflight.Group
	withEpoch   bool
	lru         *lru.Cache[string, *memoEntry]
	epochAtFill uint64
}

type memoEntry struct {
	value   any
	expires time.Time
	epoch   uint64
}

func (c *memoCaches) get(name string, capacity int, ttl time.Duration, withEpoch bool) *memoCache {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byName == nil {
		c.byName = make(map[string]*memoCache)
	}
	if mc, ok := c.byName[name]; ok {
		return mc
	}
	l, _ := lru.New[string, *memoEntry](capacity) // capacity >= 1 was checked
	mc := &memoCache{ttl: ttl, withEpoch: withEpoch, lru: l}
	c.byName[name] = mc
	return mc
}

// purgeEpoch empties the caches made with invalidate_with_epoch (a config
// epoch bump).
func (c *memoCaches) purgeEpoch() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, mc := range c.byName {
		if mc.withEpoch {
			mc.lru.Purge()
		}
	}
}

// kumoMemoize is kumo.memoize(fn, {name, ttl, capacity,
// invalidate_with_epoch, populate_timeout, retry_on_populate_timeout,
// allow_stale_reads}). populate_timeout and retry_on_populate_timeout
// are accepted, but a fill is bounded only by the event's deadline;
// allow_stale_reads only turns off invalidate_with_epoch.
//
// The memoized function returns one value. Tables are converted once per
// Lua state and that same table is returned on later hits in that state,
// so a policy must not modify what a memoized function returns. States
// missing the same key at once share one call of fn.
func (st *state) kumoMemoize(L *lua.LState) int {
	fn := L.CheckFunction(1)
	v, err := st.toGo(L.CheckTable(2))
	if err != nil {
		L.ArgError(2, err.Error())
	}
	o := config.NewObject(v, v, "struct MemoizeParams", "name", "ttl", "capacity", "invalidate_with_epoch",
		"populate_timeout", "retry_on_populate_timeout", "allow_stale_reads")
	var (
		name                         string
		ttl, populate                time.Duration
		capacity                     int
		withEpoch, retry, allowStale bool
	)
	o.Str("name", &name)
	o.Duration("ttl", &ttl)
	o.UintN("capacity", &capacity, math.MaxInt32, "usize")
	o.Bool("invalidate_with_epoch", &withEpoch)
	o.Duration("populate_timeout", &populate)
	o.Bool("retry_on_populate_timeout", &retry)
	o.Bool("allow_stale_reads", &allowStale)
	for _, req := range []string{"name", "ttl", "capacity"} {
		if _, ok := o.Get(req); !ok && o.Err() == nil {
			o.Fail("missing field `" + req + "`")
		}
	}
	if o.Err() == nil && capacity < 1 {
		o.Fail("invalid value: capacity must be at least 1")
	}
	if o.Err() != nil {
		L.RaiseError("kumo.memoize: %s", o.Err().Error())
	}
	if allowStale {
		withEpoch = false
	}
	mc := st.rt.memo.get(name, capacity, ttl, withEpoch)
	local := make(map[*memoEntry]lua.LValue)
	var keyBuf []byte
	L.Push(L.NewFunction(func(L *lua.LState) int {
		key, ok := memoKeyFast(L)
		if !ok {
			keyBuf = memoKey(L, keyBuf[:0])
			key = string(keyBuf)
		}
		if e, hit := mc.lru.Get(key); hit && time.Now().Before(e.expires) {
			if lv, ok := local[e]; ok {
				L.Push(lv)
				return 1
			}
			lv := st.fromGo(e.value)
			if len(local) >= 2*capacity {
				clear(local)
			}
			local[e] = lv
			L.Push(lv)
			return 1
		}
		// One state fills a key at a time, on its own goroutine; the
		// others wait for its result instead of calling fn too.
		n := L.GetTop()
		var res lua.LValue
		v, err, shared := mc.fill.Do(key, func() (any, error) {
			L.Push(fn)
			for i := 1; i <= n; i++ {
				L.Push(L.Get(i))
			}
			if err := L.PCall(n, 1, nil); err != nil {
				return nil, err
			}
			res = L.Get(-1)
			L.Pop(1)
			gv, err := st.toGo(res)
			if err != nil {
				return nil, fmt.Errorf("kumo.memoize %s: result: %w", name, err)
			}
			e := &memoEntry{value: gv, expires: time.Now().Add(mc.ttl)}
			mc.lru.Add(key, e)
			return e, nil
		})
		if err != nil {
			if ae, ok := err.(*lua.ApiError); ok && !shared {
				L.Error(ae.Object, 0) // this state's own error, raised as is
			}
			L.RaiseError("%s", err.Error())
		}
		e := v.(*memoEntry)
		if res == nil {
			res = st.fromGo(e.value)
		}
		local[e] = res
		L.Push(res)
		return 1
	}))
	return 1
}

// memoKeyFast is the cache key of a call without building one: no
// argument, or one string argument not starting with NUL (the marker of
// built keys).
func memoKeyFast(L *lua.LState) (string, bool) {
	switch L.GetTop() {
	case 0:
		return "\x00", true
	case 1:
		if s, ok := L.Get(1).(lua.LString); ok && (len(s) == 0 || s[0] != 0) {
			return string(s), true
		}
	}
	return "", false
}

// memoKey encodes the arguments (type-tagged, length-prefixed) after a
// NUL marker. Tables are encoded by content.
func memoKey(L *lua.LState, b []byte) []byte {
	b = append(b, 0)
	for i := 1; i <= L.GetTop(); i++ {
		b = appendKeyValue(b, L.Get(i), 0)
	}
	return b
}

func appendKeyValue(b []byte, v lua.LValue, depth int) []byte {
	switch x := v.(type) {
	case lua.LString:
		b = append(b, 's')
		b = strconv.AppendInt(b, int64(len(x)), 10)
		b = append(b, ':')
		return append(b, x...)
	case lua.LNumber:
		b = append(b, 'n')
		b = strconv.AppendFloat(b, float64(x), 'g', -1, 64)
		return append(b, ';')
	case lua.LBool:
		if x {
			return append(b, 'T')
		}
		return append(b, 'F')
	case *lua.LNilType:
		return append(b, 'N')
	case *lua.LTable:
		if depth > 16 {
			return append(b, '?')
		}
		b = append(b, '{')
		// array part then hash part, in a deterministic order per table
		x.ForEach(func(k, val lua.LValue) {
			b = appendKeyValue(b, k, depth+1)
			b = appendKeyValue(b, val, depth+1)
		})
		return append(b, '}')
	default:
		// functions, userdata: by identity
		b = append(b, 'p')
		return append(b, v.String()...)
	}
}
