package message

import "sort"

// ConnMeta is the metadata of one inbound connection (KumoMTA's conn_meta).
// Values are JSON-compatible Go values (nil, bool, int64, float64, string,
// []any, map[string]any). A ConnMeta belongs to one session goroutine and is
// not safe for concurrent use.
type ConnMeta struct {
	m map[string]any
}

// NewConnMeta returns an empty ConnMeta.
func NewConnMeta() *ConnMeta { return &ConnMeta{m: make(map[string]any, 8)} }

// Get returns the value for key and whether it is set.
func (c *ConnMeta) Get(key string) (any, bool) {
	v, ok := c.m[key]
	return v, ok
}

// GetString returns the value for key when it is a string.
func (c *ConnMeta) GetString(key string) string {
	s, _ := c.m[key].(string)
	return s
}

// Set stores v under key; a nil v removes the key.
func (c *ConnMeta) Set(key string, v any) {
	if v == nil {
		delete(c.m, key)
		return
	}
	c.m[key] = v
}

// Keys returns the keys in sorted order.
func (c *ConnMeta) Keys() []string {
	keys := make([]string, 0, len(c.m))
	for k := range c.m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Range calls fn for every entry.
func (c *ConnMeta) Range(fn func(key string, v any)) {
	for k, v := range c.m {
		fn(k, v)
	}
}
