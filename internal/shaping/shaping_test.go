package shaping

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// fakeDNS answers MX lookups from a table; a missing name is NXDOMAIN.
type fakeDNS map[string]MX

func (f fakeDNS) resolve(_ context.Context, d string) (MX, error) {
	if mx, ok := f[d]; ok {
		return mx, nil
	}
	return MX{}, errors.New("NXDOMAIN")
}

// validate accepts a handful of make_egress_path options, like the real
// strict decoder does.
func validate(m map[string]any) error {
	for _, k := range sortedKeys(m) {
		v := m[k]
		switch k {
		case "connection_limit", "max_deliveries_per_connection", "smtp_port":
			if _, ok := v.(int64); !ok {
				if _, ok := v.(string); !ok {
					return fmt.Errorf("invalid type for %s", k)
				}
			}
		case "max_connection_rate", "max_message_rate", "idle_timeout", "enable_tls",
			"consecutive_connection_failures_before_delay", "provider_name", "source_selection_rate",
			"additional_connection_limits", "additional_message_rate_throttles", "additional_source_selection_rates":
		default:
			return fmt.Errorf("unknown field `%s`", k)
		}
	}
	return nil
}

func write(t *testing.T, dir, name, src string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

var dns = fakeDNS{
	"yahoo.com":  {SiteName: "(mta5|mta6|mta7).am0.yahoodns.net", Hosts: []string{"mta5.am0.yahoodns.net.", "mta6.am0.yahoodns.net."}},
	"foo.com":    {SiteName: "(mta5|mta6|mta7).am0.yahoodns.net", Hosts: []string{"mta6.am0.yahoodns.net."}},
	"gmail.com":  {SiteName: "gmail-smtp-in.l.google.com", Hosts: []string{"gmail-smtp-in.l.google.com."}},
	"mixed.com":  {SiteName: "(a|mx).mixed", Hosts: []string{"aspmx.l.google.com.", "mx.other.net."}},
	"nullmx.com": {SiteName: "", Hosts: nil},
}

func load(t *testing.T, opts Options, paths ...string) *Shaping {
	t.Helper()
	s, err := Load(context.Background(), paths, opts, Env{Resolve: dns.resolve, ValidatePath: validate})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestRollupExample is the worked example of KumoMTA's "MX Rollups and
// Provider Blocks" page.
func TestRollupExample(t *testing.T) {
	dir := t.TempDir()
	p := write(t, dir, "shaping.toml", `
["default"]
connection_limit = 10
max_connection_rate = "100/min"
max_deliveries_per_connection = 100
max_message_rate = "100/s"
idle_timeout = "60s"
enable_tls = "Opportunistic"
consecutive_connection_failures_before_delay = 100

["yahoo.com"]
max_deliveries_per_connection = 20

["foo.com"]
mx_rollup = false
max_deliveries_per_connection = 50
connection_limit = 3

["foo.com".sources."IP-1"]
max_deliveries_per_connection = 5
`)
	s := load(t, DefaultOptions(), p)
	site := dns["foo.com"].SiteName
	got := s.EgressPathConfig(context.Background(), "foo.com", "IP-1", site)
	want := map[string]any{
		"connection_limit": int64(3), "max_deliveries_per_connection": int64(5),
		"max_connection_rate": "100/min", "max_message_rate": "100/s", "idle_timeout": "60s",
		"enable_tls": "Opportunistic", "consecutive_connection_failures_before_delay": int64(100),
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("foo.com/IP-1 = %v", got)
	}
	if got := s.EgressPathConfig(context.Background(), "foo.com", "IP-2", site); got["max_deliveries_per_connection"] != int64(50) {
		t.Fatalf("foo.com/IP-2 = %v", got)
	}
	// another domain on the yahoo site gets the rolled-up yahoo.com rules
	if got := s.EgressPathConfig(context.Background(), "other.example", "IP-1", site); got["max_deliveries_per_connection"] != int64(20) || got["connection_limit"] != int64(10) {
		t.Fatalf("yahoo site = %v", got)
	}
	if got := s.EgressPathConfig(context.Background(), "unknown.example", "IP-1", "x"); got["max_deliveries_per_connection"] != int64(100) {
		t.Fatalf("default = %v", got)
	}
	if refs := s.ReferencedSources(); !reflect.DeepEqual(refs, map[string][]string{"IP-1": {"domain:foo.com"}}) {
		t.Fatalf("refs %v", refs)
	}
}

func TestProvidersMergeAndReplaceBase(t *testing.T) {
	dir := t.TempDir()
	a := write(t, dir, "a.toml", `
["default"]
connection_limit = 10
additional_connection_limits = { a = 1 }

[provider."google"]
match = [{MXSuffix = ".google.com"}, {MXSuffix = ".googlemail.com"}]
max_deliveries_per_connection = 50
provider_connection_limit = 5
provider_max_message_rate = "100/s"

[provider."google".sources."s1"]
provider_source_selection_rate = "10/s"
connection_limit = 2

[provider."suffix"]
match = [{DomainSuffix = ".example.org"}]
idle_timeout = "5s"

["gmail.com"]
enable_tls = "Required"
`)
	b := write(t, dir, "b.json", `{
  // the later file merges over the earlier one
  "default": {"additional_connection_limits": {"b": 2}},
  "gmail.com": {"replace_base": true, "connection_limit": 7}
}`)
	s := load(t, DefaultOptions(), a, b)
	ctx := context.Background()
	got := s.EgressPathConfig(ctx, "gmail.com", "s1", dns["gmail.com"].SiteName)
	// gmail.com's replace_base block discards default and provider values
	if !reflect.DeepEqual(got, map[string]any{"connection_limit": int64(7)}) {
		t.Fatalf("gmail.com = %v", got)
	}
	got = s.EgressPathConfig(ctx, "customer.example", "s1", "site")
	if got["provider_name"] != nil {
		t.Fatalf("no MX: provider matched: %v", got)
	}
	dns["customer.example"] = MX{SiteName: "x", Hosts: []string{"aspmx.l.google.com.", "alt1.aspmx.l.googlemail.com"}}
	defer delete(dns, "customer.example")
	got = s.EgressPathConfig(ctx, "customer.example", "s1", "x")
	want := map[string]any{
		"connection_limit": int64(2), "max_deliveries_per_connection": int64(50), "provider_name": "google",
		"additional_connection_limits":      map[string]any{"a": int64(1), "b": int64(2), "shaping-provider-google-s1-limit": int64(5)},
		"additional_message_rate_throttles": map[string]any{"shaping-provider-google-s1-rate": "100/s"},
		"additional_source_selection_rates": map[string]any{"shaping-provider-google-s1-selection-rate": "10/s"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("google customer = %#v", got)
	}
	// a mixed-provider vanity domain matches no MX rule
	if got := s.EgressPathConfig(ctx, "mixed.com", "s1", "y"); got["provider_name"] != nil {
		t.Fatalf("mixed = %v", got)
	}
	if got := s.EgressPathConfig(ctx, "a.example.org", "s1", "z"); got["provider_name"] != "suffix" || got["idle_timeout"] != "5s" {
		t.Fatalf("suffix = %v", got)
	}
	// the stored default is not changed by lookups
	if got := s.EgressPathConfig(ctx, "q.example", "s9", "q"); !reflect.DeepEqual(got["additional_connection_limits"], map[string]any{"a": int64(1), "b": int64(2)}) {
		t.Fatalf("default after lookups = %v", got)
	}
	if s.Hash() == "" || s.Hash() != load(t, DefaultOptions(), a, b).Hash() || s.Hash() == load(t, DefaultOptions(), a).Hash() {
		t.Fatal("hash must be stable and change with the data")
	}
}

func TestLoadChecks(t *testing.T) {
	dir := t.TempDir()
	p := write(t, dir, "c.toml", `
["com"]
connection_limit = 1
["nxdomain.example"]
connection_limit = 1
["nullmx.com"]
connection_limit = 1
["yahoo.com"]
connection_limit = 2
["foo.com"]
connection_limit = 3
[provider.y]
match = [{MXSuffix = ".yahoodns.net"}]
`)
	opts := Options{DNSFail: Warn, NullMX: Error, AliasedSite: Warn, ProviderOverlap: Warn, LocalLoad: Error}
	s := load(t, opts, p, filepath.Join(dir, "missing.toml"), "http://127.0.0.1:1/x.toml")
	w := strings.Join(s.Warnings(), "\n")
	for _, want := range []string{"single DNS label", "error resolving MX for nxdomain.example", "multiple domain blocks alias to the same site", "domain foo.com is also matched by provider(s): y"} {
		if !strings.Contains(w, want) {
			t.Errorf("warnings lack %q:\n%s", want, w)
		}
	}
	e := strings.Join(s.Errors(), "\n")
	for _, want := range []string{"nullmx.com has a NULL MX", "local shaping source " + filepath.Join(dir, "missing.toml")} {
		if !strings.Contains(e, want) {
			t.Errorf("errors lack %q:\n%s", want, e)
		}
	}
	if strings.Contains(e+w, "127.0.0.1:1") {
		t.Errorf("remote_load defaults to Ignore:\n%s\n%s", e, w)
	}
	s = load(t, Options{SkipRemote: true}, "https://example.invalid/x.toml")
	if len(s.Warnings()) != 1 || !strings.Contains(s.Warnings()[0], "skip_remote") {
		t.Errorf("skip_remote: %v", s.Warnings())
	}
}

func TestLoadErrorsNameFileAndBlock(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ name, src, want string }{
		{"syntax.toml", "[\"default\"]\nconnection_limit = \n", "parsing toml from file " + filepath.Join(dir, "syntax.toml") + ": line 2"},
		{"syntax.json", "{\n\"default\": {,}\n}", "parsing json from file " + filepath.Join(dir, "syntax.json") + ": line 2"},
		{"unknown.toml", "[\"gmail.com\"]\nmx_rollup = false\nconection_limit = 1\n", "unknown.toml:3: [\"gmail.com\"]: unknown field `conection_limit`"},
		{"src.toml", "[\"a.com\".sources.s]\nmx_rollup = false\ncolour = 1\n", "src.toml:3: [\"a.com\"]: sources.\"s\": unknown field `colour`"},
		{"prov.toml", "[provider.p]\nmatch = [{Nope = 'x'}]\n", "prov.toml:2: [provider.\"p\"]: match[1]: unknown variant `Nope`"},
		{"auto.toml", "[[\"a.com\".automation]]\nregex = 'x'\naction = 'Suspend'\nduration = '1h'\nextra = 1\n", "auto.toml:1: [\"a.com\"]: automation[1]: unknown field `extra`"},
		{"auto2.toml", "[[\"a.com\".automation]]\nregex = 'x'\n", "automation[1]: missing field `action`"},
		{"rollup.toml", "[\"a.com\"]\nmx_rollup = 'no'\n", "rollup.toml:2: [\"a.com\"]: mx_rollup: invalid type"},
		{"notable.json", "[1]", "not a table"},
		{"pss.toml", "[\"a.com\".sources.s]\nprovider_source_selection_rate = '1/s'\n", "pss.toml:2: [\"a.com\"]: sources.\"s\": provider_source_selection_rate is only allowed in provider blocks"},
	} {
		p := write(t, dir, tc.name, tc.src)
		_, err := Load(context.Background(), []string{p}, DefaultOptions(), Env{Resolve: dns.resolve, ValidatePath: validate})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want %q", tc.name, err, tc.want)
		}
	}
	if _, err := ParseLevel("loud"); err == nil {
		t.Error("ParseLevel accepted loud")
	}
	if l, err := ParseLevel("WARN"); err != nil || l != Warn {
		t.Error("ParseLevel WARN")
	}
}

func TestRemoteFetch(t *testing.T) {
	var asked string
	env := Env{Resolve: dns.resolve, ValidatePath: validate,
		Fetch: func(_ context.Context, url string, timeout time.Duration) ([]byte, error) {
			asked = url
			if timeout != 5*time.Second {
				t.Errorf("timeout %v", timeout)
			}
			return []byte(`{"default": {"connection_limit": 4}}`), nil
		}}
	s, err := Load(context.Background(), []string{"http://tsa.example/get_config_v1/shaping"}, DefaultOptions(), env)
	if err != nil || asked == "" {
		t.Fatal(err, asked)
	}
	if got := s.EgressPathConfig(context.Background(), "a.b", "s", "x"); got["connection_limit"] != int64(4) {
		t.Fatalf("%v", got)
	}
}
