package policies

import (
	"io/fs"
	"strings"
	"testing"
)

func TestLookup(t *testing.T) {
	for _, name := range []string{"sink.lua", "sink", "/some/dir/sink.lua"} {
		b, ok := Lookup(name)
		if !ok || !strings.Contains(string(b), "smtp_server_message_received") {
			t.Fatalf("Lookup(%q) = %v", name, ok)
		}
	}
	if _, ok := Lookup("nope.lua"); ok {
		t.Fatal("unknown policy found")
	}
	if names := strings.Join(Names(), ","); names != "route-to-sink.lua,sink.lua" {
		t.Fatalf("Names() = %v", names)
	}
	if b, ok := Lookup("route-to-sink"); !ok || !strings.Contains(string(b), "get_egress_path_config") {
		t.Fatal("route-to-sink.lua not bundled")
	}
}

func TestPolicyExtrasBundled(t *testing.T) {
	for _, name := range []string{"listener_domains", "queue", "sources", "shaping", "dkim_sign", "policy_utils", "log_hooks", "kumogo"} {
		b, err := fs.ReadFile(Modules(), "policy-extras/"+name+".lua")
		if err != nil || !strings.Contains(string(b), "return mod") {
			t.Errorf("policy-extras/%s.lua: %v", name, err)
		}
	}
	if b, err := fs.ReadFile(Modules(), "policy-extras/shaping.toml"); err != nil || !strings.Contains(string(b), `["default"]`) {
		t.Errorf("policy-extras/shaping.toml: %v", err)
	}
	if _, ok := Lookup("policy-extras/queue.lua"); ok {
		t.Error("a helper module is not a policy")
	}
}
