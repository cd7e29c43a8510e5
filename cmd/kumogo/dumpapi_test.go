package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCompatDocIsCurrent fails when docs/compat.md differs from what
// kumogo --dump-api writes now; regenerate it with
// `go run ./cmd/kumogo --dump-api docs/compat.md`.
func TestCompatDocIsCurrent(t *testing.T) {
	out := filepath.Join(t.TempDir(), "compat.md")
	var stderr bytes.Buffer
	if rc := run([]string{"--dump-api", out}, &stderr); rc != 0 {
		t.Fatalf("--dump-api: rc %d: %s", rc, stderr.String())
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("../../docs/compat.md")
	if err != nil {
		t.Fatalf("docs/compat.md: %v (generate it with go run ./cmd/kumogo --dump-api docs/compat.md)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("docs/compat.md is stale: regenerate it with go run ./cmd/kumogo --dump-api docs/compat.md")
	}
	for _, line := range []string{"| `kumo.on` | provided |", "| `kumo.set_smtpsrv_threads` | no effect |",
		"| `smtp_server_message_received` | provided |", "| `Message:set_meta` | provided |"} {
		if !strings.Contains(string(got), line) {
			t.Errorf("compat.md lacks %q", line)
		}
	}
}
