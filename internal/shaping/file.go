package shaping

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/kumogo/kumogo/internal/datafile"
)

// loadFile reads one file (local or remote) and parses its blocks. A nil
// result with a nil error means the file was skipped (and reported).
// Syntax errors and invalid options are errors.
func loadFile(ctx context.Context, path string, opts Options, env Env, col *collector) (*loadedFile, error) {
	var b []byte
	if strings.HasPrefix(path, "http://") || strings.HasPrefix(path, "https://") {
		if opts.SkipRemote {
			col.push(Warn, fmt.Sprintf("Ignoring %s because skip_remote is set to true", path))
			return nil, nil
		}
		if env.Fetch == nil {
			col.push(opts.RemoteLoad, fmt.Sprintf("remote shaping source %s error: fetching remote shaping data is not available here", path))
			return nil, nil
		}
		var err error
		if b, err = env.Fetch(ctx, path, opts.HTTPTimeout); err != nil {
			col.push(opts.RemoteLoad, fmt.Sprintf("remote shaping source %s error: %v", path, err))
			return nil, nil
		}
	} else {
		read := env.ReadFile
		if read == nil {
			read = os.ReadFile
		}
		var err error
		if b, err = read(path); err != nil {
			col.push(opts.LocalLoad, fmt.Sprintf("local shaping source %s error: %v", path, err))
			return nil, nil
		}
	}
	doc, err := parseByName(path, b)
	if err != nil {
		return nil, err
	}
	if strings.HasSuffix(strings.ToLower(path), ".json") {
		b = nil // lines are only known for TOML
	}
	return parseBlocks(path, doc, b, env.ValidatePath)
}

// parseByName parses data by the file's extension: .toml as TOML, .json
// as JSON, anything else TOML, then JSON. Errors name the file and line.
func parseByName(name string, b []byte) (*datafile.Doc, error) {
	lower := strings.ToLower(name)
	switch {
	case strings.HasSuffix(lower, ".toml"):
		d, err := datafile.ParseTOML(b)
		if err != nil {
			return nil, fmt.Errorf("parsing toml from file %s: %w", name, err)
		}
		return d, nil
	case strings.HasSuffix(lower, ".json"):
		d, err := datafile.ParseJSON(b)
		if err != nil {
			return nil, fmt.Errorf("parsing json from file %s: %w", name, err)
		}
		return d, nil
	}
	d, terr := datafile.ParseTOML(b)
	if terr == nil {
		return d, nil
	}
	d, jerr := datafile.ParseJSON(b)
	if jerr == nil {
		return d, nil
	}
	return nil, fmt.Errorf("parsing %s: as toml: %v, as json: %v", name, terr, jerr)
}

// parseBlocks splits a document into its default, domain and provider
// blocks, checking every option strictly.
func parseBlocks(path string, doc *datafile.Doc, raw []byte, validate func(map[string]any) error) (*loadedFile, error) {
	// at names the file (and the line of the offending key, when known).
	at := func(block []string, err error) string {
		var ke *keyErr
		if raw != nil && errors.As(err, &ke) {
			if line := datafile.TOMLKeyLine(raw, append(append([]string(nil), block...), ke.key...)...); line > 0 {
				return fmt.Sprintf("%s:%d", path, line)
			}
		}
		return path
	}
	top, err := doc.Table()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	f := &loadedFile{byDomain: map[string]*entry{}, rollup: map[string]bool{}, byProv: map[string]*entry{}}
	for _, key := range doc.Keys() {
		val := top[key]
		switch key {
		case "default":
			e, _, err := parseDomainBlock(val, validate)
			if err != nil {
				return nil, fmt.Errorf("%s: [\"default\"]: %w", at([]string{"default"}, err), err)
			}
			f.def = e
		case "provider":
			provs, ok := val.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("%s: provider: expected a table of provider blocks", path)
			}
			for _, name := range doc.Keys("provider") {
				e, err := parseProviderBlock(provs[name], validate)
				if err != nil {
					return nil, fmt.Errorf("%s: [provider.%q]: %w", at([]string{"provider", name}, err), name, err)
				}
				f.providers = append(f.providers, name)
				f.byProv[name] = e
			}
		default:
			e, rollup, err := parseDomainBlock(val, validate)
			if err != nil {
				return nil, fmt.Errorf("%s: [%q]: %w", at([]string{key}, err), key, err)
			}
			f.domains = append(f.domains, key)
			f.byDomain[key] = e
			f.rollup[key] = rollup
		}
	}
	return f, nil
}

// parseDomainBlock parses a domain (or default) block.
func parseDomainBlock(v any, validate func(map[string]any) error) (*entry, bool, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, false, fmt.Errorf("expected a table of options, got %s", kind(v))
	}
	e := &entry{params: map[string]any{}}
	rollup := true
	for _, k := range sortedKeys(m) {
		val := m[k]
		switch k {
		case "mx_rollup":
			b, ok := val.(bool)
			if !ok {
				return nil, false, keyed(fmt.Errorf("mx_rollup: invalid type: %s, expected a boolean", kind(val)), k)
			}
			rollup = b
		case "replace_base":
			b, ok := val.(bool)
			if !ok {
				return nil, false, keyed(fmt.Errorf("replace_base: invalid type: %s, expected a boolean", kind(val)), k)
			}
			e.replaceBase = b
		case "automation":
			rules, err := parseAutomation(val)
			if err != nil {
				return nil, false, keyed(err, k)
			}
			e.automation = rules
		case "sources":
			if err := e.parseSources(val, validate, false); err != nil {
				return nil, false, keyed(err, k)
			}
		default:
			e.params[k] = val
		}
	}
	if err := checkPath(validate, e.params); err != nil {
		return nil, false, keyed(err, badKey(validate, e.params))
	}
	return e, rollup, nil
}

// parseProviderBlock parses a [provider.NAME] block.
func parseProviderBlock(v any, validate func(map[string]any) error) (*entry, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("expected a table of options, got %s", kind(v))
	}
	e := &entry{params: map[string]any{}}
	for _, k := range sortedKeys(m) {
		val := m[k]
		switch k {
		case "match":
			ms, err := parseMatches(val)
			if err != nil {
				return nil, keyed(err, k)
			}
			e.matches = ms
		case "provider_connection_limit":
			if err := checkPath(validate, map[string]any{"connection_limit": val}); err != nil {
				return nil, keyed(fmt.Errorf("provider_connection_limit: %w", err), k)
			}
			e.providerLimit = val
		case "provider_max_message_rate":
			if err := checkPath(validate, map[string]any{"max_message_rate": val}); err != nil {
				return nil, keyed(fmt.Errorf("provider_max_message_rate: %w", err), k)
			}
			e.providerRate = val
		case "replace_base":
			b, ok := val.(bool)
			if !ok {
				return nil, keyed(fmt.Errorf("replace_base: invalid type: %s, expected a boolean", kind(val)), k)
			}
			e.replaceBase = b
		case "automation":
			rules, err := parseAutomation(val)
			if err != nil {
				return nil, keyed(err, k)
			}
			e.automation = rules
		case "sources":
			if err := e.parseSources(val, validate, true); err != nil {
				return nil, keyed(err, k)
			}
		default:
			e.params[k] = val
		}
	}
	if err := checkPath(validate, e.params); err != nil {
		return nil, keyed(err, badKey(validate, e.params))
	}
	return e, nil
}

// parseSources reads a sources table: source name → options. Provider
// source blocks may also set provider_source_selection_rate.
func (e *entry) parseSources(v any, validate func(map[string]any) error, provider bool) error {
	m, ok := v.(map[string]any)
	if !ok {
		return fmt.Errorf("sources: expected a table of source blocks, got %s", kind(v))
	}
	e.sources = map[string]map[string]any{}
	for _, name := range sortedKeys(m) {
		opts, ok := m[name].(map[string]any)
		if !ok {
			return keyed(fmt.Errorf("sources.%q: expected a table of options, got %s", name, kind(m[name])), name)
		}
		check := opts
		if rate, ok := opts["provider_source_selection_rate"]; ok {
			if !provider {
				return keyed(fmt.Errorf("sources.%q: provider_source_selection_rate is only allowed in provider blocks", name), name, "provider_source_selection_rate")
			}
			check = copyMap(opts)
			delete(check, "provider_source_selection_rate")
			if err := checkPath(validate, map[string]any{"source_selection_rate": rate}); err != nil {
				return keyed(fmt.Errorf("sources.%q: provider_source_selection_rate: %w", name, err), name, "provider_source_selection_rate")
			}
		}
		if err := checkPath(validate, check); err != nil {
			return keyed(fmt.Errorf("sources.%q: %w", name, err), name, badKey(validate, check))
		}
		e.sources[name] = opts
		e.sourceOrder = append(e.sourceOrder, name)
	}
	return nil
}

func checkPath(validate func(map[string]any) error, params map[string]any) error {
	if validate == nil {
		return nil
	}
	return validate(params)
}

// parseMatches reads a provider's match list.
func parseMatches(v any) ([]match, error) {
	list, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("match: expected an array, got %s", kind(v))
	}
	out := make([]match, 0, len(list))
	for i, item := range list {
		m, ok := item.(map[string]any)
		if !ok || len(m) != 1 {
			return nil, fmt.Errorf("match[%d]: expected one of {MXSuffix=...}, {DomainSuffix=...}, {HostName=...}", i+1)
		}
		for k, val := range m {
			s, ok := val.(string)
			if !ok {
				return nil, fmt.Errorf("match[%d].%s: invalid type: %s, expected a string", i+1, k, kind(val))
			}
			switch k {
			case "MXSuffix", "DomainSuffix", "HostName":
				out = append(out, match{Kind: k, Value: s})
			default:
				return nil, fmt.Errorf("match[%d]: unknown variant `%s`, expected one of `MXSuffix`, `DomainSuffix`, `HostName`", i+1, k)
			}
		}
	}
	return out, nil
}

// parseAutomation checks the shape of [[DOMAIN.automation]] rules (the
// fields of the kumo.shaping.load page). kumogo does not run them (there
// is no traffic shaping automation daemon yet) but keeps them strict.
func parseAutomation(v any) ([]any, error) {
	list, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("automation: expected an array of rules, got %s", kind(v))
	}
	for i, item := range list {
		m, ok := item.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("automation[%d]: expected a table, got %s", i+1, kind(item))
		}
		for _, req := range []string{"regex", "action", "duration"} {
			if _, ok := m[req]; !ok {
				return nil, fmt.Errorf("automation[%d]: missing field `%s`", i+1, req)
			}
		}
		for _, k := range sortedKeys(m) {
			switch k {
			case "regex", "action", "duration", "trigger", "match_internal":
			default:
				return nil, fmt.Errorf("automation[%d]: unknown field `%s`, expected one of `regex`, `action`, `trigger`, `duration`, `match_internal`", i+1, k)
			}
		}
	}
	return list, nil
}

// mergeFrom merges a later block into e: replace_base replaces what e
// holds, otherwise options are overlaid, sources merged by name and
// automation rules appended.
func (e *entry) mergeFrom(o *entry) {
	if o.replaceBase {
		e.params = copyMap(o.params)
		e.sources = nil
		e.sourceOrder = nil
		e.automation = append([]any(nil), o.automation...)
		e.matches = append([]match(nil), o.matches...)
		e.providerLimit, e.providerRate = o.providerLimit, o.providerRate
		e.replaceBase = true
	} else {
		mergeTable(e.params, o.params)
		e.automation = append(e.automation, o.automation...)
		e.matches = append(e.matches, o.matches...)
		if o.providerLimit != nil {
			e.providerLimit = o.providerLimit
		}
		if o.providerRate != nil {
			e.providerRate = o.providerRate
		}
	}
	for _, name := range o.sourceOrder {
		if e.sources == nil {
			e.sources = map[string]map[string]any{}
		}
		if have, ok := e.sources[name]; ok {
			mergeTable(have, o.sources[name])
			continue
		}
		e.sources[name] = copyMap(o.sources[name])
		e.sourceOrder = append(e.sourceOrder, name)
	}
}

// validate checks the merged options.
func (e *entry) validate(v func(map[string]any) error) error {
	if err := checkPath(v, e.params); err != nil {
		return err
	}
	for _, name := range e.sourceOrder {
		src := e.sources[name]
		if _, ok := src["provider_source_selection_rate"]; ok {
			src = copyMap(src)
			delete(src, "provider_source_selection_rate")
		}
		if err := checkPath(v, src); err != nil {
			return fmt.Errorf("source %q: %w", name, err)
		}
	}
	return nil
}

// mergeable options merge their maps key by key instead of being
// replaced (KumoMTA's resolution order page).
func mergeable(k string) bool {
	switch k {
	case "additional_connection_limits", "additional_message_rate_throttles", "additional_source_selection_rates":
		return true
	}
	return false
}

// mergeTable overlays src on dst. Mergeable maps are combined into a new
// map, so that dst never shares a map with src.
func mergeTable(dst, src map[string]any) {
	for k, v := range src {
		if mergeable(k) {
			if have, ok := dst[k].(map[string]any); ok {
				if add, ok := v.(map[string]any); ok {
					n := copyMap(have)
					for kk, vv := range add {
						n[kk] = vv
					}
					dst[k] = n
					continue
				}
			}
		}
		dst[k] = v
	}
}

func copyMap(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func kind(v any) string {
	switch x := v.(type) {
	case nil:
		return "nothing"
	case bool:
		return fmt.Sprintf("boolean `%v`", x)
	case int64:
		return fmt.Sprintf("integer `%d`", x)
	case float64:
		return fmt.Sprintf("floating point `%v`", x)
	case string:
		return fmt.Sprintf("string %q", x)
	case []any:
		return "sequence"
	case map[string]any:
		return "map"
	}
	return fmt.Sprintf("%T", v)
}

// keyErr is an error about the key at key (a path inside the block, or
// inside the part of it that the inner error is about), so that the
// file's line can be found.
type keyErr struct {
	key []string
	err error
}

func (e *keyErr) Error() string { return e.err.Error() }
func (e *keyErr) Unwrap() error { return e.err }

// keyed prefixes the key path of err (when it has one) with keys; empty
// keys are dropped.
func keyed(err error, keys ...string) error {
	var path []string
	for _, k := range keys {
		if k != "" {
			path = append(path, k)
		}
	}
	var inner *keyErr
	if errors.As(err, &inner) {
		return &keyErr{key: append(path, inner.key...), err: inner.err}
	}
	return &keyErr{key: path, err: err}
}

// badKey is the first key (in sorted order) that validate rejects on its
// own, or "".
func badKey(validate func(map[string]any) error, params map[string]any) string {
	for _, k := range sortedKeys(params) {
		if checkPath(validate, map[string]any{k: params[k]}) != nil {
			return k
		}
	}
	return ""
}
