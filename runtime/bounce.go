package runtime

import (
	"fmt"
	"sort"

	lua "github.com/yuin/gopher-lua"

	"github.com/kumogo/kumogo/internal/bounceclass"
)

// BounceClassifierHost is the optional part of Host that receives the
// classifier of kumo.configure_bounce_classifier (the daemon hands it to
// the queue, which classifies Bounce and TransientFailure records).
type BounceClassifierHost interface {
	SetBounceClassifier(c *bounceclass.Classifier) error
}

// kumoConfigureBounceClassifier is kumo.configure_bounce_classifier
// { files = {...}, cache_size = N, ... }: the rule files are compiled at
// once, also when validating, so a bad file or expression fails --validate
// naming it. back_pressure, pool_size and uncategorized_cache_size size
// KumoMTA's classification thread pool and are accepted for
// compatibility: kumogo classifies in the delivering goroutine.
func (st *state) kumoConfigureBounceClassifier(L *lua.LState) int {
	m, ok := st.tableArg(L).(map[string]any)
	if !ok {
		L.RaiseError("configure_bounce_classifier: expected a table of parameters")
	}
	known := map[string]bool{"files": true, "back_pressure": true, "pool_size": true, "cache_size": true, "uncategorized_cache_size": true}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	cacheSize := 0
	for _, k := range keys {
		if !known[k] {
			L.RaiseError("configure_bounce_classifier: unknown field `%s`, expected one of `files`, `back_pressure`, `pool_size`, `cache_size`, `uncategorized_cache_size`", k)
		}
		if k == "files" {
			continue
		}
		n, ok := m[k].(int64) // integral Lua numbers arrive as int64
		if !ok || n < 0 {
			L.RaiseError("configure_bounce_classifier: %s: invalid type: %s, expected a non-negative integer", k, fmt.Sprint(m[k]))
		}
		if k == "cache_size" {
			cacheSize = int(n)
		}
	}
	list, ok := m["files"].([]any)
	if !ok || len(list) == 0 {
		L.RaiseError("configure_bounce_classifier: missing field `files` (a list of rule files)")
	}
	files := make([]string, len(list))
	for i, v := range list {
		s, ok := v.(string)
		if !ok {
			L.RaiseError("configure_bounce_classifier: files: invalid type: %s, expected a string", fmt.Sprint(v))
		}
		files[i] = s
	}
	c, err := bounceclass.Load(files, cacheSize)
	if err != nil {
		L.RaiseError("configure_bounce_classifier: %s", err.Error())
	}
	if h, ok := st.host().(BounceClassifierHost); ok {
		if err := h.SetBounceClassifier(c); err != nil {
			L.RaiseError("configure_bounce_classifier: %s", err.Error())
		}
	}
	return 0
}
