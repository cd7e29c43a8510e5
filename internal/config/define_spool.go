package config

import "strconv"

// DecodeSpool decodes a define_spool table.
func DecodeSpool(v any) (*Spool, error) {
	s := &Spool{Kind: "LocalDisk", MinFreeSpace: "10%", MinFreeInodes: "10%"}
	o := NewObject(v, v, "struct DefineSpoolParams", "name", "path", "kind", "flush", "rocks_params", "min_free_space", "min_free_inodes")
	o.Str("name", &s.Name)
	o.Str("path", &s.Path)
	o.Enum("kind", &s.Kind, "LocalDisk", "RocksDB")
	o.Bool("flush", &s.Flush)
	o.Map("rocks_params", &s.RocksParams)
	o.freeSpace("min_free_space", &s.MinFreeSpace)
	o.freeSpace("min_free_inodes", &s.MinFreeInodes)
	if o.err == nil && s.Name == "" {
		o.Fail("missing field `name`")
	}
	if o.err == nil && s.Path == "" {
		o.Fail("missing field `path`")
	}
	if o.err != nil {
		return nil, o.err
	}
	return s, nil
}

// freeSpace reads min_free_space/min_free_inodes: "10%" style strings or
// absolute numbers.
func (o *Object) freeSpace(key string, dst *string) {
	v, ok := o.Get(key)
	if !ok {
		return
	}
	switch x := v.(type) {
	case string:
		*dst = x
	case int64:
		if x < 0 {
			o.Fail("invalid value: " + Describe(v) + ", expected a percentage string or a non-negative number")
			return
		}
		*dst = strconv.FormatInt(x, 10)
	default:
		o.Fail("invalid type: " + Describe(v) + ", expected a percentage string or a number")
	}
}
