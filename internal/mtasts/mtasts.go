// Package mtasts implements the sending side of SMTP MTA Strict Transport
// Security (RFC 8461): the _mta-sts TXT record, the policy file fetched
// over HTTPS, its cache (max_age, refreshed when the record's id
// changes) and the matching of MX host names against the policy.
package mtasts

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Policy modes.
const (
	ModeEnforce = "enforce"
	ModeTesting = "testing"
	ModeNone    = "none"
)

// maxAgeLimit is RFC 8461's ceiling on max_age (about a year).
const maxAgeLimit = 31557600

// Policy is a parsed policy file.
type Policy struct {
	Mode   string
	MX     []string // patterns, lower case, "*." wildcards allowed
	MaxAge time.Duration
}

// Parse reads a policy file (RFC 8461 section 3.2): "key: value" lines,
// version STSv1, a mode, max_age, and mx lines unless the mode is none.
func Parse(text string) (*Policy, error) {
	p := &Policy{}
	var version, maxAge string
	for _, line := range strings.Split(strings.ReplaceAll(text, "\r\n", "\n"), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("mta-sts: policy line %q is not key: value", line)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		switch k {
		case "version":
			version = v
		case "mode":
			p.Mode = v
		case "max_age":
			maxAge = v
		case "mx":
			if v == "" || strings.ContainsAny(v, " \t") {
				return nil, fmt.Errorf("mta-sts: bad mx %q", v)
			}
			p.MX = append(p.MX, strings.ToLower(strings.TrimSuffix(v, ".")))
		}
	}
	if version != "STSv1" {
		return nil, fmt.Errorf("mta-sts: policy version %q is not STSv1", version)
	}
	switch p.Mode {
	case ModeEnforce, ModeTesting:
		if len(p.MX) == 0 {
			return nil, fmt.Errorf("mta-sts: %s policy lists no mx", p.Mode)
		}
	case ModeNone:
	default:
		return nil, fmt.Errorf("mta-sts: unknown mode %q", p.Mode)
	}
	n, err := strconv.ParseUint(maxAge, 10, 64)
	if err != nil || n > maxAgeLimit {
		return nil, fmt.Errorf("mta-sts: bad max_age %q", maxAge)
	}
	p.MaxAge = time.Duration(n) * time.Second
	return p, nil
}

// Matches reports whether host (an MX name, with or without the trailing
// dot) is allowed by the policy: equal to an mx entry, or one label under
// a "*." entry.
func (p *Policy) Matches(host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	for _, m := range p.MX {
		if rest, ok := strings.CutPrefix(m, "*."); ok {
			if label, parent, ok := strings.Cut(host, "."); ok && label != "" && parent == rest {
				return true
			}
			continue
		}
		if host == m {
			return true
		}
	}
	return false
}

// String names the policy in failure texts.
func (p *Policy) String() string {
	return "MTA-STS policy (mode " + p.Mode + ", mx " + strings.Join(p.MX, ",") + ")"
}

// Fetcher finds and caches the policies of recipient domains.
type Fetcher struct {
	// LookupTXT returns the TXT records of a name (the resolver's).
	LookupTXT func(ctx context.Context, name string) ([]string, error)
	// Client fetches the policy file; nil means a client with the system
	// roots. Redirects are never followed (RFC 8461 section 3.3).
	Client *http.Client
	// URL is where the policy of domain is fetched; nil means
	// https://mta-sts.<domain>/.well-known/mta-sts.txt.
	URL func(domain string) string
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time

	mu    sync.Mutex
	cache map[string]cached
	test  map[string]*Policy // SetTest
}

// SetTest makes Get answer these policies for their domains without DNS
// or HTTPS (kumo.dns.configure_test_mta_sts, for users' own tests).
func (f *Fetcher) SetTest(policies map[string]*Policy) {
	m := make(map[string]*Policy, len(policies))
	for d, p := range policies {
		m[strings.ToLower(strings.TrimSuffix(d, "."))] = p
	}
	f.mu.Lock()
	f.test = m
	f.mu.Unlock()
}

type cached struct {
	id      string
	policy  *Policy
	expires time.Time
}

// maxCached bounds the cache.
const maxCached = 10000

// maxPolicySize bounds the policy file (RFC 8461 suggests 64 KB).
const maxPolicySize = 64 * 1024

func (f *Fetcher) now() time.Time {
	if f.Now != nil {
		return f.Now()
	}
	return time.Now()
}

// Get returns the policy of domain: nil when it publishes none (and none
// is cached). A fetch that fails falls back on a cached policy that has
// not expired; without one the error is returned and the caller delivers
// as if there were no policy (RFC 8461 section 5.1).
func (f *Fetcher) Get(ctx context.Context, domain string) (*Policy, error) {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	f.mu.Lock()
	c, have := f.cache[domain]
	test, isTest := f.test[domain]
	testing := f.test != nil
	f.mu.Unlock()
	if isTest {
		return test, nil
	}
	if testing {
		return nil, nil // test policies replace DNS and HTTPS altogether
	}
	valid := have && f.now().Before(c.expires)

	id, err := f.recordID(ctx, domain)
	switch {
	case err != nil || id == "":
		if valid {
			return c.policy, nil
		}
		return nil, err
	case valid && id == c.id:
		return c.policy, nil
	}
	p, err := f.fetch(ctx, domain)
	if err != nil {
		if valid {
			return c.policy, nil
		}
		return nil, err
	}
	f.mu.Lock()
	if f.cache == nil || len(f.cache) >= maxCached {
		f.cache = make(map[string]cached)
	}
	f.cache[domain] = cached{id: id, policy: p, expires: f.now().Add(p.MaxAge)}
	f.mu.Unlock()
	return p, nil
}

// recordID reads the id of the _mta-sts TXT record ("" when there is no
// STSv1 record).
func (f *Fetcher) recordID(ctx context.Context, domain string) (string, error) {
	txts, err := f.LookupTXT(ctx, "_mta-sts."+domain)
	if err != nil {
		return "", err
	}
	var ids []string
	for _, t := range txts {
		if !strings.HasPrefix(t, "v=STSv1") {
			continue
		}
		for _, field := range strings.Split(t, ";") {
			if k, v, ok := strings.Cut(strings.TrimSpace(field), "="); ok && k == "id" {
				ids = append(ids, strings.TrimSpace(v))
			}
		}
	}
	if len(ids) != 1 || ids[0] == "" {
		return "", nil // none, or several: no policy (section 3.1)
	}
	return ids[0], nil
}

var errRedirect = errors.New("mta-sts: redirects are not followed")

func (f *Fetcher) fetch(ctx context.Context, domain string) (*Policy, error) {
	url := "https://mta-sts." + domain + "/.well-known/mta-sts.txt"
	if f.URL != nil {
		url = f.URL(domain)
	}
	client := http.Client{Timeout: 60 * time.Second}
	if f.Client != nil {
		client = *f.Client
	}
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return errRedirect }
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("mta-sts: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("mta-sts: fetching the policy of %s: %w", domain, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("mta-sts: fetching the policy of %s: HTTP %d", domain, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxPolicySize+1))
	if err != nil {
		return nil, fmt.Errorf("mta-sts: reading the policy of %s: %w", domain, err)
	}
	if len(body) > maxPolicySize {
		return nil, fmt.Errorf("mta-sts: the policy of %s exceeds %d bytes", domain, maxPolicySize)
	}
	return Parse(string(body))
}
