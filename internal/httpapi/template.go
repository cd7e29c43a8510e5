package httpapi

import (
	"fmt"
	"strings"

	"github.com/flosch/pongo2/v6"
)

// template is one templated field of an injection request, compiled once
// per request and rendered per recipient. KumoMTA renders with minijinja;
// kumogo uses pongo2 (Django/Jinja syntax), which covers the variable,
// filter, if and for forms that injection templates use.
type template struct {
	field  string
	static string
	tpl    *pongo2.Template
}

// compileTemplate compiles src for field under the request's dialect:
// "Jinja" (the default) or "Static" (no expansion). Handlebars is not
// offered by kumogo.
func compileTemplate(dialect, field, src string) (*template, error) {
	t := &template{field: field, static: src}
	switch dialect {
	case "", "Jinja":
	case "Static":
		return t, nil
	default:
		return nil, fmt.Errorf("failed parsing field '%s' as template: template_dialect %q is not supported by kumogo (use Jinja or Static)", field, dialect)
	}
	if !strings.Contains(src, "{{") && !strings.Contains(src, "{%") && !strings.Contains(src, "{#") {
		return t, nil
	}
	// Autoescaping is turned off in the template itself (pongo2's switch is
	// process-wide): KumoMTA's templates are not HTML-escaped either.
	tpl, err := pongo2.FromString(autoescapeOff + src + "{% endautoescape %}")
	if err != nil {
		return nil, fmt.Errorf("failed parsing field '%s' as template: %s", field, templateErr(err))
	}
	t.tpl = tpl
	return t, nil
}

const autoescapeOff = "{% autoescape off %}"

// render expands the template with vars.
func (t *template) render(vars map[string]any) (string, error) {
	if t == nil {
		return "", nil
	}
	if t.tpl == nil {
		return t.static, nil
	}
	out, err := t.tpl.Execute(pongo2.Context(vars))
	if err != nil {
		return "", fmt.Errorf("failed rendering field '%s': %s", t.field, templateErr(err))
	}
	return out, nil
}

// templateErr is pongo2's message without its template-name prefix.
func templateErr(err error) string {
	if pe, ok := err.(*pongo2.Error); ok {
		msg := pe.OrigError.Error()
		if pe.Line == 1 && pe.Column > len(autoescapeOff) {
			pe.Column -= len(autoescapeOff)
		}
		if pe.Line > 0 {
			return fmt.Sprintf("%s (line %d, column %d)", msg, pe.Line, pe.Column)
		}
		return msg
	}
	return err.Error()
}
