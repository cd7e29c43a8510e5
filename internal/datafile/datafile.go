// Package datafile reads and writes the data formats that KumoMTA policies
// and their helper modules use: TOML (github.com/BurntSushi/toml), YAML
// (go.yaml.in/yaml/v3) and JSON with comments (encoding/json). Decoded
// values are JSON-style Go values: nil, bool, int64 for integers, float64
// for floats, string, []any and map[string]any, so that integers and
// floats stay apart as Lua 5.4 keeps them. A Doc also remembers the order
// in which each table's keys appear in the file, which the shaping merge
// rules depend on ("options are merged in the order that they appear
// across your configuration files", KumoMTA's traffic shaping guide).
package datafile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Doc is one decoded document.
type Doc struct {
	// Value is the decoded top-level value.
	Value any
	// order maps a table's path (keys joined by "\x00") to its keys in
	// file order.
	order map[string][]string
	seen  map[string]bool // parent path + "\x01" + key, for note
}

// Keys returns the keys of the table at path (nil path: the top level) in
// the order the file lists them. Keys the order does not know (tables
// built in memory) come after, sorted. It returns nil when path does not
// name a table.
func (d *Doc) Keys(path ...string) []string {
	var cur any = d.Value
	for _, p := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[p]
	}
	m, ok := cur.(map[string]any)
	if !ok {
		return nil
	}
	out := make([]string, 0, len(m))
	seen := make(map[string]bool, len(m))
	for _, k := range d.order[strings.Join(path, "\x00")] {
		if _, ok := m[k]; ok && !seen[k] {
			out = append(out, k)
			seen[k] = true
		}
	}
	var rest []string
	for k := range m {
		if !seen[k] {
			rest = append(rest, k)
		}
	}
	sort.Strings(rest)
	return append(out, rest...)
}

// note records that the table at parent has key k (first sighting wins).
func (d *Doc) note(parent []string, k string) {
	if d.order == nil {
		d.order = make(map[string][]string)
		d.seen = make(map[string]bool)
	}
	p := strings.Join(parent, "\x00")
	if id := p + "\x01" + k; !d.seen[id] {
		d.seen[id] = true
		d.order[p] = append(d.order[p], k)
	}
}

// Format is a data format.
type Format int

// The formats.
const (
	JSON Format = iota
	TOML
	YAML
)

func (f Format) String() string {
	switch f {
	case TOML:
		return "TOML"
	case YAML:
		return "YAML"
	}
	return "JSON"
}

// FormatOf picks the format from a file name as KumoMTA's helpers do:
// ".toml" is TOML, ".yaml"/".yml" YAML, anything else JSON.
func FormatOf(name string) Format {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".toml":
		return TOML
	case ".yaml", ".yml":
		return YAML
	}
	return JSON
}

// Parse decodes data in format f. Syntax errors name the line.
func Parse(f Format, data []byte) (*Doc, error) {
	switch f {
	case TOML:
		return ParseTOML(data)
	case YAML:
		v, err := ParseYAML(data)
		if err != nil {
			return nil, err
		}
		return &Doc{Value: v}, nil
	}
	return ParseJSON(data)
}

// Load reads and decodes the file at path in the format its name implies.
// Errors start with the path; syntax errors name the line.
func Load(path string) (*Doc, error) {
	return LoadAs(path, FormatOf(path))
}

// LoadAs is Load with an explicit format.
func LoadAs(path string, f Format) (*Doc, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	d, err := Parse(f, b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return d, nil
}

// ErrNotTable is returned when a document must be a table and is not.
var ErrNotTable = errors.New("the document is not a table (object)")

// Table returns the top-level table of d.
func (d *Doc) Table() (map[string]any, error) {
	m, ok := d.Value.(map[string]any)
	if !ok {
		return nil, ErrNotTable
	}
	return m, nil
}
