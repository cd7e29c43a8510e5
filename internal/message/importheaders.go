package message

import (
	"fmt"
	"strings"
	"unicode"
)

// HeaderImport is one entry of msg:import_headers: the header Name, which
// of its instances to take (Match: "first", "last" (the default) or
// "all", which gives a list), how its name becomes a meta key (Transform:
// "snake_case" (the default), "kebab_case", "camel_case" or
// "pascal_case"; Target, when set, is the key instead), and whether the
// header is removed afterwards.
type HeaderImport struct {
	Name, Match, Transform, Target string
	Remove                         bool
}

// ImportHeaders copies the named headers' decoded values into the
// metadata as the specs say. A header that is absent sets nothing.
func (m *Message) ImportHeaders(specs []HeaderImport) error {
	for _, sp := range specs {
		key := sp.Target
		if key == "" {
			var err error
			if key, err = transformHeaderName(sp.Name, sp.Transform); err != nil {
				return err
			}
		}
		vals := m.AllHeaderValues(sp.Name)
		switch sp.Match {
		case "", "last":
			if len(vals) > 0 {
				m.SetMeta(key, vals[len(vals)-1])
			}
		case "first":
			if len(vals) > 0 {
				m.SetMeta(key, vals[0])
			}
		case "all":
			if len(vals) > 0 {
				list := make([]any, len(vals))
				for i, v := range vals {
					list[i] = v
				}
				m.SetMeta(key, list)
			}
		default:
			return fmt.Errorf("import_headers %s: unknown match %q (want first, last or all)", sp.Name, sp.Match)
		}
		if sp.Remove {
			m.RemoveAllNamedHeaders(sp.Name)
		}
	}
	return nil
}

// transformHeaderName turns a header name such as "X-Campaign-ID" into a
// meta key: x_campaign_id, x-campaign-id, xCampaignId or XCampaignId.
func transformHeaderName(name, transform string) (string, error) {
	words := strings.FieldsFunc(name, func(r rune) bool { return r == '-' || r == '_' || unicode.IsSpace(r) })
	for i, w := range words {
		words[i] = strings.ToLower(w)
	}
	title := func(w string) string {
		if w == "" {
			return w
		}
		return strings.ToUpper(w[:1]) + w[1:]
	}
	switch transform {
	case "", "snake_case":
		return strings.Join(words, "_"), nil
	case "kebab_case":
		return strings.Join(words, "-"), nil
	case "camel_case", "pascal_case":
		var b strings.Builder
		for i, w := range words {
			if i == 0 && transform == "camel_case" {
				b.WriteString(w)
				continue
			}
			b.WriteString(title(w))
		}
		return b.String(), nil
	}
	return "", fmt.Errorf("import_headers %s: unknown transform %q (want snake_case, kebab_case, camel_case or pascal_case)", name, transform)
}
