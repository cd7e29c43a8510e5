package policies

import (
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
