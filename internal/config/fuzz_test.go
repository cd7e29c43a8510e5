package config

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// constructors are the strict decoders a policy reaches through kumo.*.
var constructors = map[string]func(v any) (any, error){
	"make_queue_config":    func(v any) (any, error) { return DecodeQueueConfig(v) },
	"make_egress_path":     func(v any) (any, error) { return DecodeEgressPath(v) },
	"make_egress_source":   func(v any) (any, error) { return DecodeEgressSource(v) },
	"make_egress_pool":     func(v any) (any, error) { return DecodeEgressPool(v) },
	"start_esmtp_listener": func(v any) (any, error) { return DecodeESMTPListener(v, "mx.example.com") },
	"start_http_listener":  func(v any) (any, error) { return DecodeHTTPListener(v, "mx.example.com") },
	"define_spool":         func(v any) (any, error) { return DecodeSpool(v) },
	"configure_local_logs": func(v any) (any, error) { return DecodeLocalLogs(v) },
	"configure_acct_log":   func(v any) (any, error) { return DecodeAcctLog(v) },
	"make_listener_domain": func(v any) (any, error) { return DecodeListenerDomain(v) },
}

// decodedValue turns JSON into the values runtime hands the decoders for
// a Lua table: map[string]any, []any, string, bool, int64 (Lua integers)
// and float64 (other numbers).
func decodedValue(data []byte) (any, bool) {
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	var v any
	if d.Decode(&v) != nil {
		return nil, false
	}
	var conv func(any) any
	conv = func(v any) any {
		switch x := v.(type) {
		case json.Number:
			if n, err := x.Int64(); err == nil {
				return n
			}
			f, _ := x.Float64()
			return f
		case []any:
			for i := range x {
				x[i] = conv(x[i])
			}
		case map[string]any:
			for k := range x {
				x[k] = conv(x[k])
			}
		}
		return v
	}
	return conv(v), true
}

// FuzzConstructors feeds arbitrary decoded values to every constructor:
// none may panic, a success returns a value, and a table with a key no
// constructor knows is always refused by name.
func FuzzConstructors(f *testing.F) {
	for _, seed := range []string{
		`{}`, `[]`, `null`, `1`, `"x"`,
		`{"retry_interval":"20m","max_age":"7 days","egress_pool":"p","max_message_rate":"100/s"}`,
		`{"protocol":{"smtp":{"mx_list":["a.example","[10.0.0.1]:2525",{"name":"x","addr":"10.0.0.2:25"}]}}}`,
		`{"protocol":{"maildir_path":"/tmp/m","dir_mode":448}}`,
		`{"protocol":{"custom_lua":{"constructor":"c","batch_size":0}}}`,
		`{"shrink_policy":[{"interval":"1m","policy":"ShrinkData"}]}`,
		`{"connection_limit":"local:1,000","additional_connection_limits":{"a":5},"smtp_port":0}`,
		`{"enable_tls":"Required","additional_message_rate_throttles":{"x":"10/m"},"prohibited_hosts":["10.0.0.0/8"]}`,
		`{"name":"s","source_address":"10.0.0.1","remote_port":25,"suspend_when_unplumbed":{"trigger":{"Threshold":"1/s"},"duration":"1m"}}`,
		`{"name":"s","socks5_proxy_server":"127.0.0.1:1080","socks5_proxy_source_address":"127.0.0.2","socks5_proxy_username":"u","socks5_proxy_password":{"key_data":"p"}}`,
		`{"name":"h","ha_proxy_server":"[::1]:5000","ha_proxy_source_address":"::2"}`,
		`{"name":"p","entries":[{"name":"s","weight":3},{"name":"t"}]}`,
		`{"listen":"0:25","relay_hosts":["127.0.0.1"],"peer":{"10.0.0.0/8":{"hostname":"x"}},"via":{"127.0.0.1":{"banner":"b"}}}`,
		`{"trace_headers":{"received_header":false,"include_meta_names":["a"]},"tls_certificate":{"key_data":"k"}}`,
		`{"listen":"127.0.0.1:8000","trusted_hosts":[],"request_body_limit":-1}`,
		`{"name":"d","path":"/tmp","kind":"RocksDB","min_free_space":5}`,
		`{"log_dir":"/tmp","per_record":{"Reception":{"suffix":".r","enable":false}},"compression_level":99}`,
		`{"relay_to":false,"relay_from":["::1"],"log_oob":true,"ttl":"1h"}`,
		`{"max_age":1e300,"retry_interval":-1}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v, ok := decodedValue(data)
		if !ok {
			return
		}
		for name, decode := range constructors {
			out, err := decode(v)
			if err == nil && out == nil {
				t.Fatalf("%s: no value and no error for %s", name, data)
			}
			if err != nil && !strings.HasPrefix(err.Error(), "deserialize error: ") && !strings.HasPrefix(err.Error(), "peer") && !strings.HasPrefix(err.Error(), "via") {
				t.Fatalf("%s: error not in serde's words: %v", name, err)
			}
		}
		m, isMap := v.(map[string]any)
		if !isMap {
			return
		}
		// Keys are checked in sorted order, so the error names the first
		// unknown key, which may be one the input had already.
		m["\x00unknown"] = int64(1)
		for name, decode := range constructors {
			_, err := decode(m)
			if err == nil || !strings.Contains(err.Error(), "unknown field `") {
				t.Fatalf("%s accepts an unknown key: %v", name, err)
			}
		}
	})
}
