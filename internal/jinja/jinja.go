// Package jinja compiles and renders the Jinja-style templates of
// KumoMTA's configuration (per_record log templates, maildir_path) with
// pongo2, the engine the HTTP injection API uses. KumoMTA renders them
// with minijinja; pongo2 covers the variable, subscript, filter,
// arithmetic, if and for forms, and this package adds minijinja's
// `tojson` filter, which KumoMTA's per_record page uses. Output is not
// HTML-escaped, as in KumoMTA.
package jinja

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/flosch/pongo2/v6"
)

func init() {
	// pongo2 keeps its filters in a process-wide table; registered once,
	// read-only afterwards.
	if !pongo2.FilterExists("tojson") {
		pongo2.RegisterFilter("tojson", toJSON)
	}
}

func toJSON(in *pongo2.Value, _ *pongo2.Value) (*pongo2.Value, *pongo2.Error) {
	b, err := json.Marshal(in.Interface())
	if err != nil {
		return nil, &pongo2.Error{OrigError: fmt.Errorf("tojson: %w", err)}
	}
	return pongo2.AsSafeValue(string(b)), nil
}

// autoescapeOff wraps every template: pongo2's own switch is
// process-wide.
const autoescapeOff = "{% autoescape off %}"

// Template is a compiled template; one without template syntax renders
// its source as it is.
type Template struct {
	src string
	tpl *pongo2.Template
}

// HasSyntax reports whether s holds template syntax.
func HasSyntax(s string) bool {
	return strings.Contains(s, "{{") || strings.Contains(s, "{%") || strings.Contains(s, "{#")
}

// Compile compiles src; the error names the line and column.
func Compile(src string) (*Template, error) {
	t := &Template{src: src}
	if !HasSyntax(src) {
		return t, nil
	}
	tpl, err := pongo2.FromString(autoescapeOff + src + "{% endautoescape %}")
	if err != nil {
		return nil, fmt.Errorf("template syntax error: %s", errorText(err))
	}
	t.tpl = tpl
	return t, nil
}

// Render expands the template with vars.
func (t *Template) Render(vars map[string]any) (string, error) {
	if t.tpl == nil {
		return t.src, nil
	}
	out, err := t.tpl.Execute(pongo2.Context(vars))
	if err != nil {
		return "", fmt.Errorf("rendering the template: %s", errorText(err))
	}
	return out, nil
}

// errorText is pongo2's message without its template-name prefix, the
// position counted in the caller's source.
func errorText(err error) string {
	pe, ok := err.(*pongo2.Error)
	if !ok {
		return err.Error()
	}
	msg := pe.OrigError.Error()
	col := pe.Column
	if pe.Line == 1 && col > len(autoescapeOff) {
		col -= len(autoescapeOff)
	}
	if pe.Line > 0 {
		return fmt.Sprintf("%s (line %d, column %d)", msg, pe.Line, col)
	}
	return msg
}
