package config

import (
	"fmt"
	"math"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/kumogo/kumogo/internal/duration"
	"github.com/kumogo/kumogo/internal/throttle"
)

// Str reads a string.
func (o *Object) Str(key string, dst *string) {
	if v, ok := o.Get(key); ok {
		s, ok := v.(string)
		if !ok {
			o.Fail("invalid type: " + Describe(v) + ", expected a string")
			return
		}
		*dst = s
	}
}

// Bool reads a boolean.
func (o *Object) Bool(key string, dst *bool) {
	if v, ok := o.Get(key); ok {
		b, ok := v.(bool)
		if !ok {
			o.Fail("invalid type: " + Describe(v) + ", expected a boolean")
			return
		}
		*dst = b
	}
}

// Uint reads a non-negative integer no larger than limit.
func (o *Object) Uint(key string, limit int64, kind string) (int64, bool) {
	v, ok := o.Get(key)
	if !ok {
		return 0, false
	}
	n, ok := v.(int64)
	if !ok {
		o.Fail("invalid type: " + Describe(v) + ", expected " + kind)
		return 0, false
	}
	if n < 0 || n > limit {
		o.Fail("invalid value: " + Describe(v) + ", expected " + kind)
		return 0, false
	}
	return n, true
}

// Int reads a usize (at most MaxInt32, so that it fits every platform's int).
func (o *Object) Int(key string, dst *int) {
	if n, ok := o.Uint(key, math.MaxInt32, "usize"); ok {
		*dst = int(n)
	}
}

// Int64 reads a u64 (at most MaxInt64).
func (o *Object) Int64(key string, dst *int64) {
	if n, ok := o.Uint(key, math.MaxInt64, "u64"); ok {
		*dst = n
	}
}

// UintN reads a non-negative integer into dst with a serde kind name.
func (o *Object) UintN(key string, dst *int, limit int64, kind string) {
	if n, ok := o.Uint(key, limit, kind); ok {
		*dst = int(n)
	}
}

// Duration reads a duration: seconds as a number or a humantime string.
func (o *Object) Duration(key string, dst *time.Duration) {
	v, ok := o.Get(key)
	if !ok {
		return
	}
	d, err := DecodeDuration(v)
	if err != nil {
		o.Fail(err.Error())
		return
	}
	*dst = d
}

// DecodeDuration reads a decoded duration value: seconds as a number or a
// humantime string.
func DecodeDuration(v any) (time.Duration, error) {
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
	return 0, fmt.Errorf("invalid type: %s, expected a duration (number of seconds or a string like \"5m\")", Describe(v))
}

// StrList reads an array of strings; an empty table counts as empty.
func (o *Object) StrList(key string, dst *[]string) {
	v, ok := o.Get(key)
	if !ok {
		return
	}
	*dst = o.toStrList(v)
}

func (o *Object) toStrList(v any) []string {
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
				o.Fail("invalid type: " + Describe(e) + ", expected a string")
				return nil
			}
			out = append(out, s)
		}
		return out
	}
	o.Fail("invalid type: " + Describe(v) + ", expected a sequence")
	return nil
}

// CIDRList reads a list of CIDR blocks or addresses.
func (o *Object) CIDRList(key string, dst *CIDRList) {
	v, ok := o.Get(key)
	if !ok {
		return
	}
	items := o.toStrList(v)
	if o.err != nil {
		return
	}
	l, err := ParseCIDRList(items)
	if err != nil {
		o.Fail("invalid value: " + err.Error())
		return
	}
	*dst = l
}

// Enum reads a string that must be one of variants.
func (o *Object) Enum(key string, dst *string, variants ...string) {
	v, ok := o.Get(key)
	if !ok {
		return
	}
	s, ok := v.(string)
	if !ok {
		o.Fail("invalid type: " + Describe(v) + ", expected variant identifier")
		return
	}
	for _, want := range variants {
		if s == want {
			*dst = s
			return
		}
	}
	o.Fail("unknown variant `" + s + "`, " + expectedFields(variants))
}

// Map reads a map (an empty table is an empty map).
func (o *Object) Map(key string, dst *map[string]any) {
	v, ok := o.Get(key)
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
		o.Fail("invalid type: sequence, expected a map")
	default:
		o.Fail("invalid type: " + Describe(v) + ", expected a map")
	}
}

// KeySource reads a KeySource: a path string, {key_data=...} or a vault
// table.
func (o *Object) KeySource(key string, dst *KeySource) {
	v, ok := o.Get(key)
	if !ok {
		return
	}
	switch x := v.(type) {
	case string:
		*dst = KeySource{Path: x}
		return
	case map[string]any:
		if data, ok := x["key_data"]; ok && len(x) == 1 {
			if s, ok := data.(string); ok {
				*dst = KeySource{Data: []byte(s)}
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
				*dst = KeySource{Vault: vault}
				return
			}
		}
	}
	o.Fail("data did not match any variant of untagged enum KeySource")
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

// Listen reads a host:port listen address (normalizeListen).
func (o *Object) Listen(key string, dst *string) {
	var s string
	if _, ok := o.Get(key); !ok {
		return
	}
	o.Str(key, &s)
	if o.err != nil {
		return
	}
	l, err := normalizeListen(s)
	if err != nil {
		o.Fail(err.Error())
		return
	}
	*dst = l
}

// parseThrottle validates a throttle spec string.
func parseThrottle(s string) error {
	_, err := throttle.Parse(s)
	return err
}

// ThrottleSpec reads a throttle spec ("100/hour", "local:10/s,max_burst=5").
func (o *Object) ThrottleSpec(key string, dst *string) {
	v, ok := o.Get(key)
	if !ok {
		return
	}
	s, ok := v.(string)
	if !ok {
		o.Fail("invalid type: " + Describe(v) + ", expected a throttle spec string like \"100/hour\"")
		return
	}
	if err := parseThrottle(s); err != nil {
		o.Fail("invalid value: " + Describe(v) + ", expected a throttle spec like \"100/hour\" (" + err.Error() + ")")
		return
	}
	*dst = s
}

// ThrottleMap reads a map of name → throttle spec.
func (o *Object) ThrottleMap(key string, dst *map[string]string) {
	var m map[string]any
	o.Map(key, &m)
	if o.err != nil || m == nil {
		return
	}
	out := make(map[string]string, len(m))
	for _, k := range sortedKeys(m) {
		sub := &Object{m: map[string]any{k: m[k]}, input: o.input}
		var s string
		sub.ThrottleSpec(k, &s)
		if sub.err != nil {
			o.Merge(sub)
			return
		}
		out[k] = s
	}
	*dst = out
}

// parseLimit reads a connection limit: an integer or a string with
// optional "local:" prefix and ',' / '_' digit separators.
func parseLimit(v any) (n int, local bool, msg string) {
	const want = "a connection limit like 32, \"1,000\" or \"local:20\""
	switch x := v.(type) {
	case int64:
		if x < 0 || x > math.MaxInt32 {
			return 0, false, "invalid value: " + Describe(v) + ", expected " + want
		}
		return int(x), false, ""
	case string:
		s := strings.TrimSpace(x)
		s, local = strings.CutPrefix(s, "local:")
		digits := strings.NewReplacer(",", "", "_", "").Replace(strings.TrimSpace(s))
		u, err := strconv.ParseUint(digits, 10, 31)
		if err != nil || digits == "" || digits[0] == '+' {
			return 0, false, "invalid value: " + Describe(v) + ", expected " + want
		}
		return int(u), local, ""
	}
	return 0, false, "invalid type: " + Describe(v) + ", expected " + want
}

func (o *Object) limit(key string, dst *int, local *bool) {
	v, ok := o.Get(key)
	if !ok {
		return
	}
	n, l, msg := parseLimit(v)
	if msg != "" {
		o.Fail(msg)
		return
	}
	*dst, *local = n, l
}

// IPAddr reads an IP address string (IpAddr).
func (o *Object) IPAddr(key string, dst *string) {
	o.ParsedString(key, dst, "expected an IP address", func(s string) (string, error) {
		a, err := netip.ParseAddr(s)
		return a.String(), err
	})
}

// SockAddr reads an "ip:port" string (SocketAddr).
func (o *Object) SockAddr(key string, dst *string) {
	o.ParsedString(key, dst, "expected a socket address like \"10.0.0.1:5000\"", func(s string) (string, error) {
		ap, err := netip.ParseAddrPort(s)
		return ap.String(), err
	})
}

// ParsedString reads a string that parse must accept, storing parse's
// canonical form; a rejected value is an "invalid value" error saying what
// was expected.
func (o *Object) ParsedString(key string, dst *string, expected string, parse func(string) (string, error)) {
	var s string
	o.Str(key, &s)
	if o.err != nil || s == "" {
		return
	}
	v, err := parse(s)
	if err != nil {
		o.Fail("invalid value: " + Describe(s) + ", " + expected)
		return
	}
	*dst = v
}
