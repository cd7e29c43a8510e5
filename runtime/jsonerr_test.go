package runtime

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBadJSONDataFileNamesFileAndLine: --validate of a policy loading a
// broken data file names the file, line and column.
func TestBadJSONDataFileNamesFileAndLine(t *testing.T) {
	p := filepath.Join(t.TempDir(), "routing.json")
	if err := os.WriteFile(p, []byte("// routing\n{\n \"a\": 1,\n \"b\": ,\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := newRuntimeErr(t, `kumo.json_load('`+p+`')`, func(o *Options) { o.Validating = true })
	if err == nil || !strings.Contains(err.Error(), p+": line 4 column 7: invalid character ','") {
		t.Fatalf("err = %v", err)
	}
	if _, err := jsonParse([]byte(`{"a": [1, 2`)); err == nil || !strings.Contains(err.Error(), "line 1 column 12") {
		t.Fatalf("truncated: %v", err)
	}
}
