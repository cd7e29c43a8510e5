// Package policies holds the Lua bundled into the kumogo binary: the
// policies sink.lua (accept and discard everything) and route-to-sink.lua,
// and the helper modules under policy-extras/ (require
// 'policy-extras.queue' and so on; written for kumogo from KumoMTA's
// documented helper interfaces and data formats) with their default data.
// `kumogo --policy NAME` uses a file on disk when one exists and falls back
// to the bundled policy of that name.
package policies

import (
	"embed"
	"io/fs"
	"path"
	"strings"
)

//go:embed *.lua policy-extras/*.lua policy-extras/*.toml
var bundled embed.FS

// Lookup returns the bundled policy called name ("sink.lua", or "sink").
func Lookup(name string) ([]byte, bool) {
	name = path.Base(name)
	if !strings.HasSuffix(name, ".lua") {
		name += ".lua"
	}
	b, err := bundled.ReadFile(name)
	if err != nil {
		return nil, false
	}
	return b, true
}

// Names lists the bundled policies.
func Names() []string {
	entries, _ := fs.ReadDir(bundled, ".")
	out := make([]string, 0, len(entries))
	for _, e := range entries {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".lua") {
			out = append(out, e.Name())
		}
	}
	return out
}

// Modules is the file system of bundled helper modules for require.
func Modules() fs.FS { return bundled }
