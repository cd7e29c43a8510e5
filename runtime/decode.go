package runtime

import (
	"fmt"
	"math"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/duration"
)

// decodeError is a strict-decoding failure, worded like KumoMTA's serde
// errors: "deserialize error: <what>, while processing <json of input>".
type decodeError struct {
	msg   string
	input any
}

func (e *decodeError) Error() string {
	js, err := jsonEncode(e.input, false)
	if err != nil {
		js = fmt.Sprint(e.input)
	}
	return "deserialize error: " + e.msg + ", while processing " + js
}

// obj decodes one table (a map) strictly against a fixed list of fields.
// The first error sticks; later calls are no-ops.
type obj struct {
	m     map[string]any
	input any // the whole input, for error messages
	err   error
}

// newObj checks v is a map and that it has no keys outside fields.
// Unknown-field errors deliberately avoid the word "invalid" (policy
// helpers use it to tell bad values from unknown options).
func newObj(v, input any, what string, fields ...string) *obj {
	o := &obj{input: input}
	switch x := v.(type) {
	case map[string]any:
		o.m = x
	case []any:
		if len(x) != 0 {
			o.fail("invalid type: sequence, expected " + what)
			return o
		}
		o.m = map[string]any{}
	case nil:
		o.m = map[string]any{}
	default:
		o.fail("invalid type: " + describe(v) + ", expected " + what)
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
			o.fail("unknown field `" + k + "`, " + expectedFields(listed))
			return o
		}
	}
	return o
}

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

func (o *obj) fail(msg string) {
	if o.err == nil {
		o.err = &decodeError{msg: msg, input: o.input}
	}
}

// describe renders a value the way serde names an unexpected input.
func describe(v any) string {
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

// get returns the value of key when present (nil values are absent).
func (o *obj) get(key string) (any, bool) {
	if o.err != nil {
		return nil, false
	}
	v, ok := o.m[key]
	return v, ok && v != nil
}

func (o *obj) str(key string, dst *string) {
	if v, ok := o.get(key); ok {
		s, ok := v.(string)
		if !ok {
			o.fail("invalid type: " + describe(v) + ", expected a string")
			return
		}
		*dst = s
	}
}

func (o *obj) boolean(key string, dst *bool) {
	if v, ok := o.get(key); ok {
		b, ok := v.(bool)
		if !ok {
			o.fail("invalid type: " + describe(v) + ", expected a boolean")
			return
		}
		*dst = b
	}
}

// uint reads a non-negative integer no larger than limit.
func (o *obj) uint(key string, limit int64, kind string) (int64, bool) {
	v, ok := o.get(key)
	if !ok {
		return 0, false
	}
	n, ok := v.(int64)
	if !ok {
		o.fail("invalid type: " + describe(v) + ", expected " + kind)
		return 0, false
	}
	if n < 0 || n > limit {
		o.fail("invalid value: " + describe(v) + ", expected " + kind)
		return 0, false
	}
	return n, true
}

func (o *obj) integer(key string, dst *int) {
	if n, ok := o.uint(key, math.MaxInt32, "usize"); ok {
		*dst = int(n)
	}
}

func (o *obj) integer64(key string, dst *int64) {
	if n, ok := o.uint(key, math.MaxInt64, "u64"); ok {
		*dst = n
	}
}

// dur reads a duration: seconds as a number or a humantime string.
func (o *obj) dur(key string, dst *time.Duration) {
	v, ok := o.get(key)
	if !ok {
		return
	}
	d, err := toDuration(v)
	if err != nil {
		o.fail(err.Error())
		return
	}
	*dst = d
}

func toDuration(v any) (time.Duration, error) {
	switch x := v.(type) {
	case int64:
		return duration.FromSeconds(float64(x))
	case float64:
		return duration.FromSeconds(x)
	case string:
		d, err := duration.Parse(x)
		if err != nil {
			return 0, fmt.Errorf("invalid value: string %q, expected a duration: %v", x, err)
		}
		return d, nil
	}
	return 0, fmt.Errorf("invalid type: %s, expected a duration (number of seconds or a string like \"5m\")", describe(v))
}

// strList reads an array of strings; an empty table counts as empty.
func (o *obj) strList(key string, dst *[]string) {
	v, ok := o.get(key)
	if !ok {
		return
	}
	*dst = o.toStrList(v)
}

func (o *obj) toStrList(v any) []string {
	switch x := v.(type) {
	case map[string]any:
		if len(x) == 0 {
			return []string{}
		}
	case []any:
		out := make([]string, 0, len(x))
		for _, e := range x {
			s, ok := e.(string)
			if !ok {
				o.fail("invalid type: " + describe(e) + ", expected a string")
				return nil
			}
			out = append(out, s)
		}
		return out
	}
	o.fail("invalid type: " + describe(v) + ", expected a sequence")
	return nil
}

func (o *obj) cidrList(key string, dst *config.CIDRList) {
	v, ok := o.get(key)
	if !ok {
		return
	}
	items := o.toStrList(v)
	if o.err != nil {
		return
	}
	l, err := config.ParseCIDRList(items)
	if err != nil {
		o.fail("invalid value: " + err.Error())
		return
	}
	*dst = l
}

// enum reads a string that must be one of variants.
func (o *obj) enum(key string, dst *string, variants ...string) {
	v, ok := o.get(key)
	if !ok {
		return
	}
	s, ok := v.(string)
	if !ok {
		o.fail("invalid type: " + describe(v) + ", expected variant identifier")
		return
	}
	for _, want := range variants {
		if s == want {
			*dst = s
			return
		}
	}
	o.fail("unknown variant `" + s + "`, " + expectedFields(variants))
}

// mapValue reads a map (an empty table is an empty map).
func (o *obj) mapValue(key string, dst *map[string]any) {
	v, ok := o.get(key)
	if !ok {
		return
	}
	switch x := v.(type) {
	case map[string]any:
		*dst = x
	case []any:
		if len(x) == 0 {
			*dst = map[string]any{}
			return
		}
		o.fail("invalid type: sequence, expected a map")
	default:
		o.fail("invalid type: " + describe(v) + ", expected a map")
	}
}

// keySource reads a KeySource: a path string, {key_data=...} or a vault
// table.
func (o *obj) keySource(key string, dst *config.KeySource) {
	v, ok := o.get(key)
	if !ok {
		return
	}
	switch x := v.(type) {
	case string:
		*dst = config.KeySource{Path: x}
		return
	case map[string]any:
		if data, ok := x["key_data"]; ok && len(x) == 1 {
			if s, ok := data.(string); ok {
				*dst = config.KeySource{Data: []byte(s)}
				return
			}
		}
		if _, ok := x["vault_mount"]; ok {
			vault := make(map[string]string, len(x))
			good := true
			for k, e := range x {
				s, ok := e.(string)
				switch k {
				case "vault_mount", "vault_path", "vault_key", "vault_address", "vault_token":
				default:
					good = false
				}
				if !ok {
					good = false
				}
				vault[k] = s
			}
			if _, ok := vault["vault_path"]; good && ok {
				*dst = config.KeySource{Vault: vault}
				return
			}
		}
	}
	o.fail("data did not match any variant of untagged enum KeySource")
}

// normalizeListen validates host:port and maps KumoMTA's "0:25" shorthand
// to "0.0.0.0:25".
func normalizeListen(s string) (string, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", fmt.Errorf("invalid value: string %q, expected a host:port listen address (%v)", s, err)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return "", fmt.Errorf("invalid value: string %q, expected a host:port listen address (bad port)", s)
	}
	if host == "0" {
		host = "0.0.0.0"
	}
	return net.JoinHostPort(host, port), nil
}

func (o *obj) listen(key string, dst *string) {
	var s string
	if _, ok := o.get(key); !ok {
		return
	}
	o.str(key, &s)
	if o.err != nil {
		return
	}
	l, err := normalizeListen(s)
	if err != nil {
		o.fail(err.Error())
		return
	}
	*dst = l
}
