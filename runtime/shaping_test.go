package runtime

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestShapingLoad drives kumo.shaping.load and its object from Lua: the
// bundled default file under KumoMTA's share path, a local file, a remote
// file served over HTTP, the options and the methods.
func TestShapingLoad(t *testing.T) {
	dir := t.TempDir()
	local := filepath.Join(dir, "s.toml")
	os.WriteFile(local, []byte(`
["default"]
connection_limit = 3
["example.net"]
max_deliveries_per_connection = 9
["example.net".sources."src-a"]
connection_limit = 1
["nxdomain.example"]
connection_limit = 1
`), 0o644)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/get_config_v1/shaping.toml" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte("[\"default\"]\nidle_timeout = \"7s\"\n"))
	}))
	defer srv.Close()
	r := newRuntime(t, `
kumo.on('t', function(local_file, url)
  local s = kumo.shaping.load({ '/opt/kumomta/share/policy-extras/shaping.toml', local_file, url .. '/get_config_v1/shaping.toml', url .. '/missing.toml' },
    { dns_fail = 'Warn', remote_load = 'Error', http_timeout = '2s' })
  local p = s:get_egress_path_config('example.net', 'src-a', '(mx1|mx2).example.net')
  assert(p.connection_limit == 1 and p.max_deliveries_per_connection == 9, kumo.json_encode(p))
  assert(p.idle_timeout == '7s' and p.max_message_rate == '100/s', 'remote and bundled default merged')
  local refs = s:get_referenced_sources()
  assert(refs['src-a'][1] == 'site:(mx1|mx2).example.net', kumo.json_encode(refs))
  local w = table.concat(s:get_warnings(), '\n')
  assert(w:find('error resolving MX for nxdomain.example', 1, true), w)
  local e = table.concat(s:get_errors(), '\n')
  assert(e:find('missing.toml', 1, true) and e:find('404', 1, true), e)
  assert(#s:hash() == 64)
  local ok, err = pcall(function() return s:match_rules({}) end)
  assert(not ok and tostring(err):find('not provided by kumogo'))
  return 'ok'
end)
kumo.on('bad', function(opts) return kumo.shaping.load({}, opts) end)
`, withExtras(&fakeDNS{}))
	if out := run(t, r, local, srv.URL); out[0] != "ok" {
		t.Fatal(out)
	}
	for _, tc := range []struct {
		opts map[string]any
		want string
	}{
		{map[string]any{"dns_fial": "Warn"}, "unknown field `dns_fial`"},
		{map[string]any{"dns_fail": "Loud"}, "Expected one of `Ignore`, `Warn` or `Error`"},
		{map[string]any{"skip_remote": "yes"}, "invalid type"},
	} {
		_, err := r.Call(context.Background(), "bad", tc.opts)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v", tc.opts, err)
		}
	}
}
