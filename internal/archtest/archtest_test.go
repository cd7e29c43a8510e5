package archtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const mod = "github.com/kumogo/kumogo"

// listModule returns the module path and the production import graph of
// every package in the module, from `go list -e -json ./...` at the module
// root. -e keeps packages that do not build yet: their imports still parse.
func listModule(t *testing.T) (string, []Package) {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == "/dev/null" {
		t.Fatalf("not inside a module (GOMOD=%q)", gomod)
	}
	cmd := exec.Command("go", "list", "-e", "-json=ImportPath,Imports,Module", "./...")
	cmd.Dir = filepath.Dir(gomod)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err = cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	type listed struct {
		ImportPath string
		Imports    []string
		Module     *struct{ Path string }
	}
	var (
		pkgs       []Package
		modulePath string
	)
	dec := json.NewDecoder(bytes.NewReader(out))
	for i := 0; i < 1_000_000; i++ {
		var p listed
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decoding go list output: %v", err)
		}
		if p.Module != nil && modulePath == "" {
			modulePath = p.Module.Path
		}
		pkgs = append(pkgs, Package{ImportPath: p.ImportPath, Imports: p.Imports})
	}
	if modulePath == "" {
		t.Fatal("go list reported no module path")
	}
	return modulePath, pkgs
}

func TestImportDirections(t *testing.T) {
	modulePath, pkgs := listModule(t)
	if modulePath != mod {
		t.Fatalf("module path is %q, rules are written for %q", modulePath, mod)
	}
	seenSelf := false
	for _, p := range pkgs {
		if p.ImportPath == mod+"/internal/archtest" {
			seenSelf = true
		}
	}
	if !seenSelf {
		t.Fatalf("go list did not report this package among %d packages; the graph is incomplete", len(pkgs))
	}
	for _, v := range Check(modulePath, pkgs, Rules()) {
		t.Errorf("import direction violated: %s", v)
	}
}

func TestCheckReportsViolations(t *testing.T) {
	p := func(path string, imports ...string) Package {
		full := make([]string, len(imports))
		for i, imp := range imports {
			if rest, ok := strings.CutPrefix(imp, "x/"); ok {
				full[i] = mod + "/" + rest // a module package
			} else {
				full[i] = imp
			}
		}
		return Package{ImportPath: mod + "/" + path, Imports: full}
	}
	graph := []Package{
		p("cmd/kumogo", "x/smtpd", "x/runtime", "x/queue", "x/queue/egress", "fmt"),      // allowed: cmd wires everything
		p("smtpd", "x/runtime", "x/internal/message", "context"),                         // runtime: violation
		p("smtpd", "x/queue/egress"),                                                     // violation
		p("smtpd", "x/queue"),                                                            // allowed
		p("runtime", "x/queue/spool"),                                                    // violation (queue/...)
		p("runtime", "x/smtpd"),                                                          // violation
		p("queue", "x/queue/egress", "x/queue/spool"),                                    // egress: violation, spool ok
		p("queue/spool", "x/queue"),                                                      // violation
		p("queue/egress", "x/runtime", "x/internal/logrecord"),                           // runtime: violation
		p("internal/logrecord", "x/queue/spool", "x/internal/message"),                   // queue/spool: violation
		p("internal/httpapi", "x/policies"),                                              // violation
		p("internal/message", "github.com/rs/zerolog", "strings"),                        // not stdlib: violation
		p("internal/testutil", "x/cmd/kumogo"),                                           // violation (cmd and nothing else)
		p("policies", "x/internal/message", "embed"),                                     // violation
		Package{ImportPath: "example.com/other", Imports: []string{mod + "/cmd/kumogo"}}, // outside the module: ignored
	}
	type pair struct{ from, to string }
	want := map[pair]bool{
		{"smtpd", "runtime"}:                          true,
		{"smtpd", "queue/egress"}:                     true,
		{"runtime", "queue/spool"}:                    true,
		{"runtime", "smtpd"}:                          true,
		{"queue", "queue/egress"}:                     true,
		{"queue/spool", "queue"}:                      true,
		{"queue/egress", "runtime"}:                   true,
		{"internal/logrecord", "queue/spool"}:         true,
		{"internal/httpapi", "policies"}:              true,
		{"internal/message", "github.com/rs/zerolog"}: true,
		{"internal/testutil", "cmd/kumogo"}:           true,
		{"policies", "internal/message"}:              true,
	}
	got := map[pair]bool{}
	for _, v := range Check(mod, graph, Rules()) {
		if !strings.Contains(v.String(), v.Importer) || !strings.Contains(v.String(), v.Imported) {
			t.Errorf("message %q does not name both packages", v)
		}
		got[pair{strings.TrimPrefix(v.Importer, mod+"/"), strings.TrimPrefix(v.Imported, mod+"/")}] = true
	}
	for w := range want {
		if !got[w] {
			t.Errorf("violation %s -> %s not reported", w.from, w.to)
		}
	}
	for g := range got {
		if !want[g] {
			t.Errorf("unexpected violation %s -> %s", g.from, g.to)
		}
	}
}

func TestMatch(t *testing.T) {
	cases := []struct {
		pattern, pkg string
		want         bool
	}{
		{"...", mod + "/smtpd", true},
		{"...", "fmt", false},
		{"queue/...", mod + "/queue", true},
		{"queue/...", mod + "/queue/spool", true},
		{"queue/...", mod + "/queuex", false},
		{"queue", mod + "/queue/spool", false},
		{"runtime", "runtime", false}, // the standard library's runtime is not ours
		{"runtime", mod + "/runtime", true},
	}
	for _, c := range cases {
		if got := Match(mod, c.pattern, c.pkg); got != c.want {
			t.Errorf("Match(%q, %q) = %v, want %v", c.pattern, c.pkg, got, c.want)
		}
	}
}
