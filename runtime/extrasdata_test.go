package runtime

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	lua "github.com/yuin/gopher-lua"
)

func TestSimpleFromDomain(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"a@example.com", "example.com", true},
		{"  a@example.com ", "example.com", true},
		{"Alice <a@Example.COM>", "Example.COM", true},
		{"<a@x.org>", "x.org", true},
		{"\"Quoted, Name\" <a@x.org>", "", false},
		{"a@x.org, b@y.org", "", false},
		{"a@x.org (comment)", "", false},
		{"group: a@x.org;", "", false},
		{"no-at-sign", "", false},
		{"a@b@c", "", false},
		{"Name <a@x.org> trailing", "", false},
		{"<a@x.org", "", false},
		{"a@", "", false},
		{"@x.org", "", false},
		{"a b@x.org", "", false},
	} {
		got, ok := simpleFromDomain(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("%q: %q %v, want %q %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

// TestExtrasFromDomain: from_domain agrees with msg:from_header().domain,
// through the fast path and through the full parse.
func TestExtrasFromDomain(t *testing.T) {
	r := newRuntime(t, `
local x = require 'kumogo.extras_data'
local map = kumo.domain_map.new { ['*.org'] = 'org', ['y.org'] = 'exact' }
kumo.on('smtp_server_message_received', function(msg)
  local f = msg:from_header()
  local d, v = x.from_domain_lookup(msg, map)
  assert(d == x.from_domain(msg))
  assert(v == (d and map[d]), tostring(v))
  msg:set_meta('got', tostring(x.from_domain(msg)))
  msg:set_meta('want', tostring(f and f.domain))
  msg:set_meta('mapped', tostring(v))
end)
kumo.on('bad', function() return x.from_domain_lookup(nil, {}) end)`)
	// twice over: the second round is answered from the state's cache
	// (strcache.go), and must agree all the same
	froms := []string{"a@x.org", "Alice <a@y.org>", "\"Doe, J\" <j@z.org>, k@w.org", "=?utf-8?q?J=C3=B6rg?= <j@u.org>", "Folded\r\n <f@v.org>", "bogus", ""}
	for _, from := range append(froms, froms...) {
		data := "Subject: s\r\n\r\nbody\r\n"
		if from != "" {
			data = "From: " + from + "\r\n" + data
		}
		m := testMessage(t, data, "r@example.com")
		if err := r.MessageReceived(context.Background(), m, newTestConn()); err != nil {
			t.Fatal(err)
		}
		got, _ := m.Meta("got")
		want, _ := m.Meta("want")
		if got != want {
			t.Errorf("From %q: from_domain %v, from_header %v", from, got, want)
		}
	}
	m := testMessage(t, "From: Alice <a@y.org>\r\n\r\nx\r\n", "r@example.com")
	r.MessageReceived(context.Background(), m, newTestConn())
	if v, _ := m.Meta("mapped"); v != "exact" {
		t.Errorf("from_domain_lookup: %v", v)
	}
	if _, err := r.Call(context.Background(), "bad"); err == nil {
		t.Error("from_domain_lookup accepted a table as its domain map")
	}
}

// TestExtrasDataShared: the loader runs once for all states, again when a
// listed file changes, and again after the time to live.
func TestExtrasDataShared(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "d.toml")
	os.WriteFile(f, []byte("v = 1\n"), 0o644)
	r := newRuntime(t, `
local x = require 'kumogo.extras_data'
kumo.on('t', function(path, ttl)
  local v = x.get('k', { path }, ttl, function()
    local d = kumo.serde.toml_load(path)
    d.map = kumo.domain_map.new { ['*.example.com'] = d.v }
    d.stamp = tostring({})
    return d
  end)
  return v.v, v.map['a.example.com'], v.stamp
end)`)
	call := func(ttl float64) (int64, int64, string) {
		t.Helper()
		out := run(t, r, f, ttl)
		return out[0].(int64), out[1].(int64), out[2].(string)
	}
	v, m, first := call(60)
	if v != 1 || m != 1 {
		t.Fatalf("first: %v %v", v, m)
	}
	// another state gets the shared copy (and the domain map survives it)
	st, err := r.newState()
	if err != nil {
		t.Fatal(err)
	}
	out, err := st.callEvent(context.Background(), "t", []lua.LValue{lua.LString(f), lua.LNumber(60)})
	st.L.Close()
	if err != nil || out[0] != int64(1) || out[1] != int64(1) || out[2] != first {
		t.Fatalf("second state: %v %v (first load %s)", out, err, first)
	}
	if v, _, s := call(60); v != 1 || s != first {
		t.Fatalf("cached: %v %v", v, s)
	}
	// a changed file is reloaded
	os.WriteFile(f, []byte("v = 22\n"), 0o644)
	future := time.Now().Add(2 * time.Second)
	os.Chtimes(f, future, future)
	v, m, second := call(60)
	if v != 22 || m != 22 || second == first {
		t.Fatalf("after edit: %v %v %v", v, m, second)
	}
	// reset (a config epoch bump) drops the entries
	r.extras.reset()
	if _, _, s := call(60); s == second {
		t.Fatal("reset did not drop the shared data")
	}
	// an entry stored with a zero time to live is rebuilt on next use
	later := future.Add(2 * time.Second)
	os.Chtimes(f, later, later)
	_, _, third := call(0)
	if _, _, s := call(0); s == third || third == second {
		t.Fatal("an expired entry was served")
	}
}

func TestExtrasQueueFieldsAndKeyLine(t *testing.T) {
	dir := t.TempDir()
	tf := filepath.Join(dir, "q.toml")
	os.WriteFile(tf, []byte("a = 1\n[t.x]\nb = 2\n"), 0o644)
	jf := filepath.Join(dir, "q.json")
	os.WriteFile(jf, []byte(`{"a": 1}`), 0o644)
	r := newRuntime(t, `
local x = require 'kumogo.extras_data'
kumo.on('smtp_server_message_received', function(msg)
  local c, tn, d = x.queue_fields(msg, 'X-Campaign', 'X-Tenant', true)
  local c2, tn2, d2 = x.queue_fields(msg, nil, 'X-Nope', false)
  msg:set_meta('r', table.concat({ tostring(c), tostring(tn), tostring(d), tostring(c2), tostring(tn2), tostring(d2) }, ','))
end)
kumo.on('t', function(tf, jf)
  local ok = pcall(x.queue_fields, 'not a message', 'a', 'b', true)
  return x.key_line(tf, 't', 'x', 'b'), x.key_line(tf, 'a'), x.key_line(tf, 'zzz'), x.key_line(jf, 'a'), x.key_line(tf .. '.missing', 'a'), ok
end)`)
	m := testMessage(t, "X-Tenant: acme\r\nX-Campaign: spring\r\n\r\nx\r\n", "u@Dest.Example")
	if err := r.MessageReceived(context.Background(), m, newTestConn()); err != nil {
		t.Fatal(err)
	}
	if got, _ := m.Meta("r"); got != "spring,acme,Dest.Example,nil,nil,nil" {
		t.Fatalf("queue_fields: %v", got)
	}
	if c, _ := m.Meta("campaign"); c != "spring" {
		t.Fatalf("queue_fields did not set the campaign meta: %v", c)
	}
	out := run(t, r, tf, jf)
	if out[0] != int64(3) || out[1] != int64(1) || out[2] != nil || out[3] != nil || out[4] != nil || out[5] != false {
		t.Fatalf("key_line: %#v", out)
	}
}
