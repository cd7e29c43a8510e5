package jinja

import (
	"strings"
	"testing"
)

func TestCompileAndRender(t *testing.T) {
	tpl, err := Compile(`{{ rec | tojson }} {{ headers['x-a'] }} <{{ n - 1 }}>`)
	if err != nil {
		t.Fatal(err)
	}
	out, err := tpl.Render(map[string]any{"rec": map[string]any{"id": "a<b"}, "headers": map[string]any{"x-a": "&"}, "n": int64(3)})
	if want := `{"id":"a\u003cb"} & <2>`; err != nil || out != want {
		t.Fatalf("got %q, %v; want %q", out, err, want)
	}
	static, err := Compile("/plain/path")
	if err != nil {
		t.Fatal(err)
	}
	if out, _ := static.Render(nil); out != "/plain/path" {
		t.Fatal(out)
	}
	// the column counts in the caller's source, not the wrapped one
	if _, err := Compile("ab {{ x }"); err == nil || !strings.Contains(err.Error(), "(line 1, column 9)") {
		t.Fatalf("error: %v", err)
	}
}
