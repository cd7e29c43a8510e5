package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// decodeError is a strict-decoding failure, worded like KumoMTA's serde
// errors: "deserialize error: <what>, while processing <json of input>".
type decodeError struct {
	msg   string
	input any
}

func (e *decodeError) Error() string {
	js, err := jsonEncode(e.input)
	if err != nil {
		js = fmt.Sprint(e.input)
	}
	return "deserialize error: " + e.msg + ", while processing " + js
}

// Object decodes one table (a map) strictly against a fixed list of
// fields. The first error sticks; later calls are no-ops, so a decoder
// reads every field in turn and checks Err once.
type Object struct {
	m     map[string]any
	input any // the whole input, for error messages
	err   error
}

// NewObject checks v is a map and that it has no keys outside fields.
// Unknown-field errors deliberately avoid the word "invalid" (policy
// helpers use it to tell bad values from unknown options).
func NewObject(v, input any, what string, fields ...string) *Object {
	o := &Object{input: input}
	switch x := v.(type) {
	case map[string]any:
		o.m = x
	case []any:
		if len(x) != 0 {
			o.Fail("invalid type: sequence, expected " + what)
			return o
		}
		o.m = map[string]any{}
	case nil:
		o.m = map[string]any{}
	default:
		o.Fail("invalid type: " + Describe(v) + ", expected " + what)
		return o
	}
	for _, k := range sortedKeys(o.m) {
		known := false
		for _, f := range fields {
			if f == k {
				known = true
				break
			}
		}
		if !known {
			// Policy helpers classify errors mentioning "invalid" as bad
			// values of known options, so names containing it (such as
			// invalid_line_endings) are left out of the list.
			listed := make([]string, 0, len(fields))
			for _, f := range fields {
				if !strings.Contains(f, "invalid") {
					listed = append(listed, f)
				}
			}
			o.Fail("unknown field `" + k + "`, " + expectedFields(listed))
			return o
		}
	}
	return o
}

// Err returns the first decoding error, or nil.
func (o *Object) Err() error { return o.err }

// Input returns the whole input that error messages quote; nested objects
// pass it on so that every error shows the constructor's whole argument.
func (o *Object) Input() any { return o.input }

// Len returns the number of keys of the decoded table.
func (o *Object) Len() int { return len(o.m) }

func expectedFields(fields []string) string {
	switch len(fields) {
	case 0:
		return "there are no fields"
	case 1:
		return "expected `" + fields[0] + "`"
	case 2:
		return "expected `" + fields[0] + "` or `" + fields[1] + "`"
	}
	var b strings.Builder
	b.WriteString("expected one of ")
	for i, f := range fields {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("`" + f + "`")
	}
	return b.String()
}

// Fail records msg as the error unless one is recorded already.
func (o *Object) Fail(msg string) {
	if o.err == nil {
		o.err = &decodeError{msg: msg, input: o.input}
	}
}

// Describe renders a value the way serde names an unexpected input.
func Describe(v any) string {
	switch x := v.(type) {
	case nil:
		return "unit value"
	case bool:
		return "boolean `" + strconv.FormatBool(x) + "`"
	case int64:
		return "integer `" + strconv.FormatInt(x, 10) + "`"
	case float64:
		return "floating point `" + strconv.FormatFloat(x, 'g', -1, 64) + "`"
	case string:
		return "string " + strconv.Quote(x)
	case []any:
		return "sequence"
	case map[string]any:
		return "map"
	default:
		return fmt.Sprintf("%T", v)
	}
}

// Get returns the value of key when present (nil values are absent).
func (o *Object) Get(key string) (any, bool) {
	if o.err != nil {
		return nil, false
	}
	v, ok := o.m[key]
	return v, ok && v != nil
}

// Merge copies the first error of a nested decoder into o.
func (o *Object) Merge(sub *Object) {
	if sub.err != nil && o.err == nil {
		o.err = sub.err
	}
}

// Seq reads key as a Lua sequence (an empty table counts as an empty one).
// ok is false when the key is absent or not a sequence (the latter is
// recorded as an "invalid type" error expecting what).
func (o *Object) Seq(key, what string) (items []any, ok bool) {
	v, present := o.Get(key)
	if !present {
		return nil, false
	}
	switch x := v.(type) {
	case []any:
		return x, true
	case map[string]any:
		if len(x) == 0 {
			return nil, true
		}
		o.Fail("invalid type: map, expected " + what)
	default:
		o.Fail("invalid type: " + Describe(v) + ", expected " + what)
	}
	return nil, false
}

// unimplemented lists the given keys that are not honoured, skipping
// values that cannot change behaviour (false, empty tables, empty
// strings).
func (o *Object) unimplemented(fields []string, honoured map[string]bool) []string {
	var out []string
	for _, k := range fields {
		if honoured[k] {
			continue
		}
		v, ok := o.Get(k)
		if !ok || v == false || v == "" {
			continue
		}
		switch x := v.(type) {
		case map[string]any:
			if len(x) == 0 {
				continue
			}
		case []any:
			if len(x) == 0 {
				continue
			}
		}
		out = append(out, k)
	}
	return out
}

// jsonEncode renders v as compact JSON without HTML escaping, as serde_json
// prints the input of a failed decode.
func jsonEncode(v any) (string, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return "", err
	}
	return string(bytes.TrimRight(buf.Bytes(), "\n")), nil
}

// sortedKeys returns the keys of m in order, so that errors and decoded
// maps do not depend on Go's map order.
func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
