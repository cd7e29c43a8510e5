// Package shaping merges KumoMTA traffic shaping files (the data behind
// kumo.shaping.load and the policy-extras.shaping helper) and resolves the
// egress path parameters for a (domain, source, site) triple.
//
// The format and merge rules are those of KumoMTA's user guide (Traffic
// Shaping: "Configuration Files", "MX Rollups and Provider Blocks",
// "Option Resolution Order and Precedence") and the kumo.shaping.load
// reference page: files are merged in order; the "default" block is the
// base; a domain block applies to the MX site of the domain unless it says
// mx_rollup = false; [provider.NAME] blocks match by domain suffix, MX
// suffix or MX host name; DOMAIN.sources.SOURCE blocks refine per egress
// source; replace_base = true discards what earlier blocks accumulated.
package shaping

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"
)

// Level is the severity of a load check: ignored, a warning or an error.
type Level int

// The levels, as KumoMTA names them.
const (
	Ignore Level = iota
	Warn
	Error
)

// ParseLevel parses "Ignore", "Warn" or "Error" (any case).
func ParseLevel(s string) (Level, error) {
	switch strings.ToLower(s) {
	case "ignore":
		return Ignore, nil
	case "warn":
		return Warn, nil
	case "error":
		return Error, nil
	}
	return Ignore, fmt.Errorf("Expected one of `Ignore`, `Warn` or `Error`, got `%s`", s)
}

// Options are kumo.shaping.load's options.
type Options struct {
	ProviderOverlap, DNSFail, NullMX, AliasedSite, RemoteLoad, LocalLoad Level
	SkipRemote                                                           bool
	HTTPTimeout                                                          time.Duration
}

// DefaultOptions are the defaults of the kumo.shaping.load page.
func DefaultOptions() Options {
	return Options{LocalLoad: Error, HTTPTimeout: 5 * time.Second}
}

// MX is what the shaping merge needs from an MX lookup.
type MX struct {
	SiteName string   // "" for a null MX
	Hosts    []string // MX host names
}

// Env is what Load needs from its host.
type Env struct {
	// Resolve looks up the MX of a domain.
	Resolve func(ctx context.Context, domain string) (MX, error)
	// ValidatePath checks that a table of options is a valid
	// make_egress_path table (strictly: unknown keys are errors).
	ValidatePath func(params map[string]any) error
	// ReadFile reads a local file; nil means os.ReadFile.
	ReadFile func(path string) ([]byte, error)
	// Fetch reads a remote (http/https) file; nil means remote files
	// are reported at the RemoteLoad level and skipped.
	Fetch func(ctx context.Context, url string, timeout time.Duration) ([]byte, error)
}

// entry is the merged data of one default/domain/site/provider block.
type entry struct {
	params      map[string]any
	sources     map[string]map[string]any
	sourceOrder []string
	automation  []any
	replaceBase bool

	// provider blocks only
	matches       []match
	providerLimit any // provider_connection_limit
	providerRate  any // provider_max_message_rate
}

// Shaping is a loaded, merged set of shaping files.
type Shaping struct {
	resolve    func(ctx context.Context, domain string) (MX, error)
	bySite     ordered
	byDomain   ordered
	byProvider ordered
	warnings   []string
	errors     []string
	hash       string
}

// ordered is a map that remembers insertion order.
type ordered struct {
	keys []string
	m    map[string]*entry
}

func (o *ordered) get(k string) *entry { return o.m[k] }

func (o *ordered) put(k string, e *entry) {
	if o.m == nil {
		o.m = map[string]*entry{}
	}
	if _, ok := o.m[k]; !ok {
		o.keys = append(o.keys, k)
	}
	o.m[k] = e
}

// mergeOrPut merges e into the entry at k, or stores it.
func (o *ordered) mergeOrPut(k string, e *entry) {
	if have := o.get(k); have != nil {
		have.mergeFrom(e)
		return
	}
	o.put(k, e)
}

// collector gathers check messages by level.
type collector struct{ warnings, errors []string }

func (c *collector) push(l Level, msg string) {
	switch l {
	case Warn:
		c.warnings = append(c.warnings, msg)
	case Error:
		c.errors = append(c.errors, msg)
	}
}

// loadedFile is one parsed file, blocks in file order.
type loadedFile struct {
	def       *entry
	domains   []string
	byDomain  map[string]*entry
	rollup    map[string]bool
	providers []string
	byProv    map[string]*entry
}

// Load reads and merges paths in order. Parse errors and invalid options
// fail the load, naming the file and block; other problems (a missing
// file, a domain whose MX does not resolve, ...) are reported by the
// levels of opts in Errors and Warnings.
func Load(ctx context.Context, paths []string, opts Options, env Env) (*Shaping, error) {
	var col collector
	var files []*loadedFile
	for _, p := range paths {
		f, err := loadFile(ctx, p, opts, env, &col)
		if err != nil {
			return nil, err
		}
		if f != nil {
			files = append(files, f)
		}
	}

	// Resolve every rolled-up domain first, then merge in file order.
	mx := map[string]MX{}
	mxErr := map[string]error{}
	for _, f := range files {
		for _, d := range f.domains {
			if !f.rollup[d] {
				continue
			}
			if _, done := mx[d]; done || mxErr[d] != nil {
				continue
			}
			if env.Resolve == nil {
				mxErr[d] = fmt.Errorf("no DNS resolver")
				continue
			}
			r, err := env.Resolve(ctx, d)
			if err != nil {
				mxErr[d] = err
				continue
			}
			mx[d] = r
		}
	}

	s := &Shaping{resolve: env.Resolve}
	aliases := map[string][]string{}
	var siteOrder []string
	for _, f := range files {
		if f.def != nil {
			s.byDomain.mergeOrPut("default", f.def)
		}
		for _, d := range f.domains {
			e := f.byDomain[d]
			if labels := strings.Count(strings.TrimSuffix(d, "."), ".") + 1; labels == 1 {
				col.push(Warn, fmt.Sprintf("Entry for domain '%s' consists of a single DNS label. Domain names in TOML sections need to be quoted like '[\"%s.com\"]' otherwise the '.' will create a nested table rather than being added to the domain name.", d, d))
			}
			if !f.rollup[d] {
				s.byDomain.mergeOrPut(d, e)
				continue
			}
			if err := mxErr[d]; err != nil {
				col.push(opts.DNSFail, fmt.Sprintf("error resolving MX for %s: %v. Ignoring the shaping config for that domain.", d, err))
				continue
			}
			r := mx[d]
			if r.SiteName == "" {
				col.push(opts.NullMX, fmt.Sprintf("domain %s has a NULL MX and cannot be used with mx_rollup=true. Ignoring the shaping config for that domain.", d))
				continue
			}
			if _, ok := aliases[r.SiteName]; !ok {
				siteOrder = append(siteOrder, r.SiteName)
			}
			aliases[r.SiteName] = append(aliases[r.SiteName], d)
			s.bySite.mergeOrPut(r.SiteName, e)
		}
		for _, p := range f.providers {
			s.byProvider.mergeOrPut(p, f.byProv[p])
		}
	}

	// The merged blocks must still be valid egress path tables.
	for _, set := range []struct {
		what string
		o    *ordered
	}{{"site", &s.bySite}, {"domain", &s.byDomain}, {"provider", &s.byProvider}} {
		for _, k := range set.o.keys {
			if err := set.o.m[k].validate(env.ValidatePath); err != nil {
				return nil, fmt.Errorf("%s: %s: %w", set.what, k, err)
			}
		}
	}

	if opts.AliasedSite != Ignore {
		for _, site := range siteOrder {
			if ds := aliases[site]; len(ds) > 1 {
				col.push(opts.AliasedSite, fmt.Sprintf("multiple domain blocks alias to the same site: %s: %s", site, strings.Join(ds, ", ")))
			}
		}
	}
	if opts.ProviderOverlap != Ignore {
		var ds []string
		for d := range mx {
			ds = append(ds, d)
		}
		sort.Strings(ds)
		for _, d := range ds {
			var names []string
			for _, p := range s.byProvider.keys {
				if s.providerMatches(ctx, p, s.byProvider.m[p], d) {
					names = append(names, p)
				}
			}
			if len(names) > 0 {
				col.push(opts.ProviderOverlap, fmt.Sprintf("domain %s is also matched by provider(s): %s", d, strings.Join(names, ", ")))
			}
		}
	}
	s.warnings, s.errors = col.warnings, col.errors
	s.hash = s.computeHash()
	return s, nil
}

// Errors lists the problems reported at the Error level.
func (s *Shaping) Errors() []string { return s.errors }

// Warnings lists the problems reported at the Warn level.
func (s *Shaping) Warnings() []string { return s.warnings }

// Hash identifies the merged data (and its messages).
func (s *Shaping) Hash() string { return s.hash }

// ReferencedSources maps each egress source named in a sources block to
// the blocks naming it ("site:NAME", "domain:NAME").
func (s *Shaping) ReferencedSources() map[string][]string {
	out := map[string][]string{}
	for _, set := range []struct {
		prefix string
		o      *ordered
	}{{"site:", &s.bySite}, {"domain:", &s.byDomain}} {
		for _, k := range set.o.keys {
			for _, src := range set.o.m[k].sourceOrder {
				out[src] = append(out[src], set.prefix+k)
			}
		}
	}
	return out
}

func (s *Shaping) computeHash() string {
	h := sha256.New()
	for _, set := range []struct {
		name string
		o    *ordered
	}{{"by_site", &s.bySite}, {"by_domain", &s.byDomain}, {"by_provider", &s.byProvider}} {
		h.Write([]byte(set.name))
		for _, k := range set.o.keys {
			e := set.o.m[k]
			h.Write([]byte(k))
			b, _ := json.Marshal([]any{e.params, e.sources, e.automation, e.replaceBase, e.matches, e.providerLimit, e.providerRate})
			h.Write(b)
		}
	}
	h.Write([]byte("warnings"))
	h.Write([]byte(strings.Join(s.warnings, "\x00")))
	h.Write([]byte("errors"))
	h.Write([]byte(strings.Join(s.errors, "\x00")))
	return hex.EncodeToString(h.Sum(nil))
}
