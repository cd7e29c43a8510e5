package loghook

import (
	"bytes"
	"encoding/json"
	"strings"
)

// decodeRecord parses an encoded record, with integral numbers as int64
// (so that a template's `timestamp - created` is an integer, as in
// KumoMTA's per_record example).
func decodeRecord(data []byte) (map[string]any, error) {
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	var rec map[string]any
	if err := d.Decode(&rec); err != nil {
		return nil, err
	}
	return normalize(rec).(map[string]any), nil
}

func normalize(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = normalize(e)
		}
	case []any:
		for i, e := range x {
			x[i] = normalize(e)
		}
	case json.Number:
		if n, err := x.Int64(); err == nil {
			return n
		}
		f, _ := x.Float64()
		return f
	}
	return v
}

// templateVars are a per_record template's variables (KumoMTA's
// per_record page): the record's fields, the whole record as
// `log_record`, and `headers` with lower-cased names (the original names
// stay too).
func templateVars(rec map[string]any) map[string]any {
	vars := make(map[string]any, len(rec)+1)
	for k, v := range rec {
		vars[k] = v
	}
	vars["log_record"] = rec
	if h, ok := rec["headers"].(map[string]any); ok {
		lh := make(map[string]any, 2*len(h))
		for k, v := range h {
			lh[k] = v
			lh[strings.ToLower(k)] = v
		}
		vars["headers"] = lh
	}
	return vars
}
