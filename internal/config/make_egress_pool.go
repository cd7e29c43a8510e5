package config

import "math"

// DecodeEgressPool decodes a make_egress_pool table.
func DecodeEgressPool(v any) (*EgressPool, error) {
	p := EgressPool{TTL: defaultSourceTTL}
	o := NewObject(v, v, "struct EgressPool", "name", "entries", "ttl")
	o.Str("name", &p.Name)
	o.Duration("ttl", &p.TTL)
	if ev, ok := o.Get("entries"); ok {
		var items []any
		switch x := ev.(type) {
		case []any:
			items = x
		case map[string]any:
			if len(x) != 0 {
				o.Fail("invalid type: map, expected a sequence of pool entries")
			}
		default:
			o.Fail("invalid type: " + Describe(ev) + ", expected a sequence of pool entries")
		}
		p.Entries = make([]EgressPoolEntry, 0, len(items))
		for _, it := range items {
			e := NewObject(it, o.input, "struct EgressPoolEntry", "name", "weight")
			ent := EgressPoolEntry{Weight: 1}
			e.Str("name", &ent.Name)
			e.UintN("weight", &ent.Weight, math.MaxUint32, "u32")
			if e.err == nil && ent.Name == "" {
				e.Fail("missing field `name`")
			}
			if e.err != nil {
				o.Merge(e)
				break
			}
			p.Entries = append(p.Entries, ent)
		}
	}
	if o.err == nil && p.Name == "" {
		o.Fail("missing field `name`")
	}
	if o.err != nil {
		return nil, o.err
	}
	return &p, nil
}

// UnspecifiedPool is the built-in "unspecified" pool of the unspecified
// source.
func UnspecifiedPool() EgressPool {
	return EgressPool{
		Name:    "unspecified",
		Entries: []EgressPoolEntry{{Name: "unspecified", Weight: 1}},
		TTL:     defaultSourceTTL,
	}
}
