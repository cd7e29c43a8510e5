package bounceclass

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func write(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// The first matching rule wins: across files in order, classes in file
// order (not alphabetical), rules in order; JSON files the same.
func TestRuleOrderAndFormats(t *testing.T) {
	first := write(t, "custom.toml", `
[rules]
Zeta = ["woot", "aaa"]
Alpha = ["woot", "aaa", "bbb"]
`)
	second := write(t, "more.json", `{"rules": {"SecondFile": ["bbb", "ccc"], "Another": ["ccc", "ddd"]}}`)
	iana := write(t, "iana.toml", `
# rules in KumoMTA's format
[rules]
InvalidRecipient = ["^(451|550) [45]\\.1\\.[1234] "]
QuotaIssues = ["^552 [45]\\.2\\.2 "]
`)
	c, err := Load([]string{first, second, iana}, 0)
	if err != nil {
		t.Fatal(err)
	}
	for in, want := range map[string]string{
		"woot":                           "Zeta",
		"aaa":                            "Zeta",
		"bbb":                            "Alpha",
		"ccc":                            "SecondFile",
		"ddd":                            "Another",
		"550 5.1.1 no such user":         "InvalidRecipient",
		"552 5.2.2 mailbox is stuffed":   "QuotaIssues",
		"352 5.2.2 mailbox is stuffed":   Uncategorized,
		"421 4.4.2 connection timed out": Uncategorized,
	} {
		for i := 0; i < 2; i++ { // the second answer comes from the cache
			if got := c.Classify(in); got != want {
				t.Errorf("Classify(%q) = %q, want %q", in, got, want)
			}
		}
	}
}

func TestBadFiles(t *testing.T) {
	for name, tc := range map[string]struct{ file, content, want string }{
		"regex":    {"bad.toml", "[rules]\nX = [\"(unclosed\"]\n", "class X"},
		"toml":     {"bad.toml", "[rules\n", "decoding"},
		"no rules": {"empty.toml", "other = 1\n", "missing table `rules`"},
		"json":     {"bad.json", `{"rules": {"X": "not a list"}}`, "decoding"},
	} {
		p := write(t, tc.file, tc.content)
		if _, err := Load([]string{p}, 0); err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: %v, want an error naming %s and %q", name, err, p, tc.want)
		}
	}
	if _, err := Load([]string{"/nonexistent/rules.toml"}, 0); err == nil {
		t.Error("a missing file was accepted")
	}
}
