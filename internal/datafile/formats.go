package datafile

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	yaml "go.yaml.in/yaml/v3"
)

// ParseTOML decodes a TOML document.
func ParseTOML(data []byte) (*Doc, error) {
	var m map[string]any
	md, err := toml.Decode(string(data), &m)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			msg := fmt.Sprintf("line %d, column %d: %s", pe.Position.Line, pe.Position.Col, pe.Message)
			if pe.LastKey != "" {
				msg += fmt.Sprintf(" (after key %q)", pe.LastKey)
			}
			return nil, errors.New(msg)
		}
		return nil, err
	}
	if m == nil {
		m = map[string]any{}
	}
	d := &Doc{Value: normalize(m)}
	// Implicit parents ([a.b] defines a) count where they first appear.
	for _, k := range md.Keys() {
		for i := 1; i <= len(k); i++ {
			d.note(k[:i-1], k[i-1])
		}
	}
	return d, nil
}

// ParseYAML decodes the first YAML document of data (nil when empty).
func ParseYAML(data []byte) (any, error) {
	var v any
	if err := yaml.Unmarshal(data, &v); err != nil {
		return nil, errors.New(strings.TrimPrefix(err.Error(), "yaml: "))
	}
	return normalize(v), nil
}

// normalize turns decoder output into JSON-style values: integers become
// int64 (float64 beyond its range), times become RFC 3339 strings (local
// dates and times keep their TOML form), maps get string keys.
func normalize(v any) any {
	switch x := v.(type) {
	case int:
		return int64(x)
	case int64, float64, string, bool, nil:
		return x
	case uint64:
		if x <= math.MaxInt64 {
			return int64(x)
		}
		return float64(x)
	case float32:
		return float64(x)
	case time.Time:
		// BurntSushi/toml marks TOML's local date/time kinds with these
		// zone names.
		switch x.Location().String() {
		case "date-local":
			return x.Format("2006-01-02")
		case "time-local":
			return x.Format("15:04:05.999999999")
		case "datetime-local":
			return x.Format("2006-01-02T15:04:05.999999999")
		}
		return x.Format(time.RFC3339Nano)
	case []any:
		for i := range x {
			x[i] = normalize(x[i])
		}
		return x
	case []map[string]any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = normalize(e)
		}
		return out
	case map[string]any:
		for k, e := range x {
			x[k] = normalize(e)
		}
		return x
	case map[any]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[fmt.Sprint(k)] = normalize(e)
		}
		return out
	}
	return fmt.Sprint(v)
}

// ParseJSON decodes a JSON document that may contain //, /* */ and #
// comments (as KumoMTA's json_parse accepts). Syntax errors name the line and column.
func ParseJSON(data []byte) (*Doc, error) {
	clean := StripJSONComments(data)
	dec := json.NewDecoder(bytes.NewReader(clean))
	dec.UseNumber()
	d := &Doc{}
	v, err := d.jsonValue(dec, nil)
	if err == nil {
		if _, err2 := dec.Token(); err2 != io.EOF {
			err = errors.New("trailing characters after the JSON value")
		}
	}
	if err != nil {
		off := dec.InputOffset()
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			err = errors.New("unexpected end of JSON input")
			off = int64(len(clean))
		}
		// the column is that of the next byte to read: the offending one
		// for a syntax error (the token decoder stops before it), or just
		// past the end of a truncated document
		var se *json.SyntaxError
		if errors.As(err, &se) {
			off = se.Offset
		}
		// comments are blanked line by line, so lines and columns are
		// those of the file
		before := clean[:min(int(off), len(clean))]
		line := 1 + bytes.Count(before, []byte("\n"))
		col := len(before) - bytes.LastIndexByte(before, '\n')
		return nil, fmt.Errorf("line %d column %d: %s", line, col, strings.TrimPrefix(err.Error(), "json: "))
	}
	d.Value = v
	return d, nil
}

// jsonValue reads one value from dec, noting object key order.
func (d *Doc) jsonValue(dec *json.Decoder, path []string) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			m := map[string]any{}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				k, ok := kt.(string)
				if !ok {
					return nil, fmt.Errorf("object key is %v, not a string", kt)
				}
				d.note(path, k)
				v, err := d.jsonValue(dec, append(path[:len(path):len(path)], k))
				if err != nil {
					return nil, err
				}
				m[k] = v
			}
			if _, err := dec.Token(); err != nil {
				return nil, err
			}
			return m, nil
		case '[':
			out := []any{}
			for dec.More() {
				v, err := d.jsonValue(dec, path)
				if err != nil {
					return nil, err
				}
				out = append(out, v)
			}
			if _, err := dec.Token(); err != nil {
				return nil, err
			}
			return out, nil
		}
		return nil, fmt.Errorf("unexpected %v", t)
	case json.Number:
		if i, err := strconv.ParseInt(string(t), 10, 64); err == nil {
			return i, nil
		}
		f, err := strconv.ParseFloat(string(t), 64)
		if err != nil {
			return nil, fmt.Errorf("number %s: %w", t, err)
		}
		return f, nil
	}
	return tok, nil // string, bool, nil
}

// StripJSONComments blanks out //, # and /* */ comments outside string
// literals, keeping newlines so that offsets still give the right line.
func StripJSONComments(in []byte) []byte {
	if bytes.IndexAny(in, "/#") < 0 {
		return in
	}
	out := make([]byte, 0, len(in))
	inStr := false
	for i := 0; i < len(in); i++ {
		c := in[i]
		if inStr {
			out = append(out, c)
			if c == '\\' && i+1 < len(in) {
				i++
				out = append(out, in[i])
			} else if c == '"' {
				inStr = false
			}
			continue
		}
		switch {
		case c == '"':
			inStr = true
			out = append(out, c)
		case c == '#' || (c == '/' && i+1 < len(in) && in[i+1] == '/'):
			for i < len(in) && in[i] != '\n' {
				i++
			}
			if i < len(in) {
				out = append(out, '\n')
			}
		case c == '/' && i+1 < len(in) && in[i+1] == '*':
			i += 2
			for i < len(in) && !(in[i] == '*' && i+1 < len(in) && in[i+1] == '/') {
				if in[i] == '\n' {
					out = append(out, '\n')
				}
				i++
			}
			i++ // skip the closing '/'
			out = append(out, ' ')
		default:
			out = append(out, c)
		}
	}
	return out
}

// TOMLStyle selects the layout of EncodeTOML.
type TOMLStyle int

// The TOML layouts, after KumoMTA's toml_encode, toml_encode_pretty and
// toml_encode_pretty_compact.
const (
	// TOMLCompact writes sub-tables without indentation.
	TOMLCompact TOMLStyle = iota
	// TOMLPretty indents sub-tables.
	TOMLPretty
	// TOMLPrettyCompact is TOMLPretty with empty tables written inline
	// as `key = {}` instead of as a section header. Keys are sorted at
	// every level in all styles.
	TOMLPrettyCompact
)

// emptyTable is written as an inline empty table.
type emptyTable struct{}

func (emptyTable) MarshalTOML() ([]byte, error) { return []byte("{}"), nil }

// EncodeTOML writes v, which must be a table, as TOML.
func EncodeTOML(v any, style TOMLStyle) (string, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return "", fmt.Errorf("toml: a document must be a table, not %s", kindOf(v))
	}
	var val any = m
	if style == TOMLPrettyCompact {
		val = inlineEmpty(m)
	}
	var buf bytes.Buffer
	enc := toml.NewEncoder(&buf)
	enc.Indent = ""
	if style != TOMLCompact {
		enc.Indent = "  "
	}
	if err := enc.Encode(val); err != nil {
		return "", err
	}
	return buf.String(), nil
}

// inlineEmpty copies m with every empty nested table replaced by
// emptyTable.
func inlineEmpty(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		if sub, ok := v.(map[string]any); ok {
			if len(sub) == 0 {
				out[k] = emptyTable{}
				continue
			}
			v = inlineEmpty(sub)
		}
		out[k] = v
	}
	return out
}

// EncodeYAML writes v as YAML.
func EncodeYAML(v any) (string, error) {
	b, err := yaml.Marshal(v)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

func kindOf(v any) string {
	switch v.(type) {
	case nil:
		return "nil"
	case bool:
		return "a boolean"
	case int64, float64:
		return "a number"
	case string:
		return "a string"
	case []any:
		return "an array"
	}
	return fmt.Sprintf("%T", v)
}

// errLineProbe stops a decode at the probed key.
var errLineProbe = errors.New("line probe")

// lineProbe fails to decode, so that BurntSushi/toml reports the
// position of the key it was given.
type lineProbe struct{}

func (lineProbe) UnmarshalTOML(any) error { return errLineProbe }

// TOMLKeyLine returns the line on which the key at path is defined in the
// TOML document data, or 0 when it is not found (or is inside an array of
// tables). It lets errors about a key (an unknown option, a bad value)
// name its line.
func TOMLKeyLine(data []byte, path ...string) int {
	if len(path) == 0 {
		return 0
	}
	var top map[string]toml.Primitive
	md, err := toml.Decode(string(data), &top)
	if err != nil {
		return 0
	}
	prim, ok := top[path[0]]
	for _, k := range path[1:] {
		if !ok {
			return 0
		}
		var m map[string]toml.Primitive
		if err := md.PrimitiveDecode(prim, &m); err != nil {
			return 0
		}
		prim, ok = m[k]
	}
	if !ok {
		return 0
	}
	return primLine(md, prim, 4)
}

// primLine is the line of prim's key; a table defined only implicitly
// (by [a.b] for a) has none, and gets the first line of its keys.
func primLine(md toml.MetaData, prim toml.Primitive, depth int) int {
	var pe toml.ParseError
	if err := md.PrimitiveDecode(prim, lineProbe{}); errors.As(err, &pe) && pe.Message == errLineProbe.Error() && pe.Position.Line > 0 {
		return pe.Position.Line
	}
	var m map[string]toml.Primitive
	if depth == 0 || md.PrimitiveDecode(prim, &m) != nil {
		return 0
	}
	best := 0
	for _, child := range m {
		if l := primLine(md, child, depth-1); l > 0 && (best == 0 || l < best) {
			best = l
		}
	}
	return best
}
