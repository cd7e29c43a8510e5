package archtest

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestFlowDocNamesExist keeps docs/flow.md honest: every Go file it names
// exists, and every function or method it names, as `(*Type).Method`,
// `Type.Method` or `pkg.Func`, is declared in the module.
func TestFlowDocNamesExist(t *testing.T) {
	root := filepath.Join("..", "..")
	doc, err := os.ReadFile(filepath.Join(root, "docs", "flow.md"))
	if err != nil {
		t.Fatal(err)
	}
	// every production Go file, by directory
	src := map[string][]string{}
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "third_party" || d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && p != root {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(p, ".go") && !strings.HasSuffix(p, "_test.go") {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			dir := filepath.Base(filepath.Dir(p))
			src[dir] = append(src[dir], string(b))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	declared := func(re *regexp.Regexp, dir string) bool {
		for d, files := range src {
			if dir != "" && d != dir {
				continue
			}
			for _, f := range files {
				if re.MatchString(f) {
					return true
				}
			}
		}
		return false
	}
	var (
		goFile = regexp.MustCompile(`^[\w/.-]+\.go$`)
		ptrM   = regexp.MustCompile(`^\(\*(\w+)\)\.(\w+)$`)
		dotted = regexp.MustCompile(`^(?:\w+\.)?(\w+)\.(\w+)$`)
	)
	names := 0
	for _, m := range regexp.MustCompile("`([^`]+)`").FindAllStringSubmatch(string(doc), -1) {
		tok := m[1]
		switch {
		case goFile.MatchString(tok):
			names++
			if _, err := os.Stat(filepath.Join(root, tok)); err != nil {
				t.Errorf("docs/flow.md names %s: %v", tok, err)
			}
		case ptrM.MatchString(tok):
			names++
			p := ptrM.FindStringSubmatch(tok)
			if !declared(regexp.MustCompile(`func \(\w+ \*`+p[1]+`\) `+p[2]+`\(`), "") {
				t.Errorf("docs/flow.md names %s: no such method", tok)
			}
		case dotted.MatchString(tok):
			p := dotted.FindStringSubmatch(tok)
			typ, name := p[1], p[2]
			if strings.HasSuffix(name, "go") || strings.HasPrefix(tok, "kumo.") || strings.HasPrefix(tok, "smtp.") { // file names, Lua, go-smtp
				continue
			}
			names++
			method := regexp.MustCompile(`func \(\w+ \*?` + typ + `\) ` + name + `\(`)
			iface := regexp.MustCompile(`(?s)type ` + typ + ` interface \{[^}]*\n\t` + name + `\(`)
			fn := regexp.MustCompile(`(?m)^func ` + name + `[\[(]|^type ` + name + ` `)
			if !declared(method, "") && !declared(iface, "") && !declared(fn, typ) {
				t.Errorf("docs/flow.md names %s: not declared", tok)
			}
		}
	}
	if names < 30 {
		t.Fatalf("only %d names checked: the parser no longer reads docs/flow.md", names)
	}
}

// TestReadmeLayoutListsEveryPackage: README's layout section names every
// package of the module (one line each), so that a newcomer finds it.
func TestReadmeLayoutListsEveryPackage(t *testing.T) {
	modulePath, pkgs := listModule(t)
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, layout, ok := strings.Cut(string(readme), "\n## Layout\n")
	if !ok {
		t.Fatal("README.md has no Layout section")
	}
	layout, _, _ = strings.Cut(layout, "\n## ")
	for _, p := range pkgs {
		rel := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, modulePath), "/")
		if rel == "" {
			continue
		}
		if !strings.Contains(layout, "`"+rel+"`") {
			t.Errorf("README.md's Layout section does not list `%s`: add one line for it", rel)
		}
	}
}
