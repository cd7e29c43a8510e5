// Package archtest checks kumogo's import directions (DESIGN.md, "Packages"):
// cmd wires everything, nothing imports cmd, and lower packages never import
// higher ones. The rules are a table; Check applies them to an import graph,
// and the package's test feeds it the module's real graph from `go list`.
package archtest

import (
	"fmt"
	"sort"
	"strings"
)

// Package is one node of an import graph: an import path and its direct
// imports (production code only, not tests).
type Package struct {
	ImportPath string
	Imports    []string
}

// Rule restricts what the packages matching From may import. Patterns are
// relative to the module path: "smtpd" names exactly that package, "queue/..."
// names queue and everything under it, and "..." names every package of the
// module.
type Rule struct {
	// From selects the importing packages.
	From string
	// Deny lists module packages that From may not import.
	Deny []string
	// StdOnly allows imports from the standard library only.
	StdOnly bool
	// NoModule forbids imports of any module package outside From itself.
	NoModule bool
	// Why is shown in the failure message.
	Why string
}

// Violation is one import that breaks a rule.
type Violation struct {
	Importer string // full import path of the importing package
	Imported string // full import path of the imported package
	Rule     Rule
}

func (v Violation) String() string {
	return fmt.Sprintf("%s imports %s: forbidden by rule for %q (%s)", v.Importer, v.Imported, v.Rule.From, v.Rule.Why)
}

// Rules is kumogo's import-direction table (DESIGN.md).
func Rules() []Rule {
	return []Rule{
		{From: "...", Deny: []string{"cmd/..."},
			Why: "cmd wires everything; nothing imports cmd"},
		{From: "internal/...", Deny: []string{"runtime", "smtpd", "queue/...", "policies/..."},
			Why: "internal packages are shared pieces below the product packages"},
		{From: "internal/message", StdOnly: true,
			Why: "the message model depends on the standard library only"},
		{From: "internal/smtpreply", StdOnly: true,
			Why: "the SMTP response model is the bottom of smtpd, queue, egress and records"},
		{From: "internal/event", StdOnly: true,
			Why: "event names are constants every producer imports"},
		{From: "runtime", Deny: []string{"smtpd", "queue/..."},
			Why: "the Lua host sits below smtpd and the queue"},
		{From: "smtpd", Deny: []string{"runtime", "queue/egress", "cmd/..."},
			Why: "smtpd defines the interfaces it needs; cmd wires the implementations in"},
		{From: "queue", Deny: []string{"smtpd", "runtime", "queue/egress"},
			Why: "the scheduler defines what it needs from egress; cmd wires it"},
		{From: "queue/spool", Deny: []string{"queue", "smtpd", "runtime"},
			Why: "the spool is storage below the scheduler"},
		{From: "queue/egress/...", Deny: []string{"smtpd", "runtime"},
			Why: "egress delivers (implementing the scheduler's Router and Connector); it does not know the listener or the Lua host"},
		{From: "policies/...", NoModule: true,
			Why: "bundled policies are embedded files with no module dependencies"},
	}
}

// Match reports whether the full import path pkg matches pattern, which is
// relative to modulePath ("x", "x/..." or "...").
func Match(modulePath, pattern, pkg string) bool {
	if !inModule(modulePath, pkg) {
		return false
	}
	if pattern == "..." {
		return true
	}
	if base, ok := strings.CutSuffix(pattern, "/..."); ok {
		full := modulePath + "/" + base
		return pkg == full || strings.HasPrefix(pkg, full+"/")
	}
	return pkg == modulePath+"/"+pattern
}

func inModule(modulePath, pkg string) bool {
	return pkg == modulePath || strings.HasPrefix(pkg, modulePath+"/")
}

// IsStd reports whether an import path belongs to the standard library: its
// first element has no dot (as the go command decides for GOPATH-less
// builds), or it is the cgo pseudo-package "C".
func IsStd(path string) bool {
	first, _, _ := strings.Cut(path, "/")
	return !strings.Contains(first, ".")
}

// Check applies rules to pkgs and returns every violation, sorted by
// importer then imported package.
func Check(modulePath string, pkgs []Package, rules []Rule) []Violation {
	var out []Violation
	for _, p := range pkgs {
		if !inModule(modulePath, p.ImportPath) {
			continue
		}
		for _, r := range rules {
			if !Match(modulePath, r.From, p.ImportPath) {
				continue
			}
			for _, imp := range p.Imports {
				if forbidden(modulePath, r, imp) {
					out = append(out, Violation{Importer: p.ImportPath, Imported: imp, Rule: r})
				}
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Importer != out[j].Importer {
			return out[i].Importer < out[j].Importer
		}
		return out[i].Imported < out[j].Imported
	})
	return out
}

func forbidden(modulePath string, r Rule, imp string) bool {
	if r.StdOnly && !IsStd(imp) {
		return true
	}
	if r.NoModule && inModule(modulePath, imp) && !Match(modulePath, r.From, imp) {
		return true
	}
	for _, d := range r.Deny {
		if Match(modulePath, d, imp) {
			return true
		}
	}
	return false
}
