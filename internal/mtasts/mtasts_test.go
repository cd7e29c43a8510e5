package mtasts

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

const enforce = "version: STSv1\r\nmode: enforce\r\nmx: mx1.example.com\r\nmx: *.mail.example.com\r\nmax_age: 86400\r\n"

func TestParse(t *testing.T) {
	p, err := Parse(enforce)
	if err != nil || p.Mode != ModeEnforce || len(p.MX) != 2 || p.MaxAge != 24*time.Hour {
		t.Fatalf("%+v %v", p, err)
	}
	for host, want := range map[string]bool{
		"mx1.example.com.": true, "MX1.Example.com": true, "a.mail.example.com": true,
		"mail.example.com": false, "a.b.mail.example.com": false, "mx2.example.com": false, "evilmx1.example.com": false,
	} {
		if p.Matches(host) != want {
			t.Errorf("%s: %v", host, !want)
		}
	}
	for _, bad := range []string{
		"mode: enforce\nmx: a\nmax_age: 1",                           // no version
		"version: STSv1\nmode: enforce\nmax_age: 1",                  // no mx
		"version: STSv1\nmode: strict\nmx: a\nmax_age: 1",            // bad mode
		"version: STSv1\nmode: testing\nmx: a\nmax_age: -1",          // bad max_age
		"version: STSv1\nmode: testing\nmx: a\nmax_age: 99999999999", // too long
		"version: STSv1\nnonsense",
	} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
	if p, err := Parse("version: STSv1\nmode: none\nmax_age: 60\n"); err != nil || p.Mode != ModeNone {
		t.Errorf("none: %+v %v", p, err)
	}
}

// TestFetcher: the policy is fetched over HTTPS from a local server, kept
// for max_age while the TXT id stays, refetched when the id changes, and
// a cached policy survives a failing server.
func TestFetcher(t *testing.T) {
	var body atomic.Value
	body.Store(enforce)
	var hits, status atomic.Int32
	status.Store(200)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.URL.Path != "/.well-known/mta-sts.txt" || r.Host != "mta-sts.example.com" {
			http.Error(w, "wrong", 404)
			return
		}
		if r.URL.Query().Get("redirect") != "" {
			http.Redirect(w, r, "/elsewhere", 302)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(int(status.Load()))
		w.Write([]byte(body.Load().(string)))
	}))
	defer srv.Close()
	var txt atomic.Value
	txt.Store([]string{"v=STSv1; id=20260101"})
	now := time.Unix(1_800_000_000, 0)
	f := &Fetcher{
		LookupTXT: func(_ context.Context, name string) ([]string, error) {
			switch name {
			case "_mta-sts.example.com":
				return txt.Load().([]string), nil
			case "_mta-sts.dnsfail.example":
				return nil, errors.New("SERVFAIL")
			}
			return nil, nil
		},
		Client: srv.Client(),
		URL: func(domain string) string {
			return srv.URL + "/.well-known/mta-sts.txt"
		},
		Now: func() time.Time { return now },
	}
	// the Host header must name mta-sts.<domain>: rewrite it the way a
	// real fetch would send it
	f.Client.Transport.(*http.Transport).Proxy = nil
	tr := f.Client.Transport
	f.Client.Transport = roundTripper(func(r *http.Request) (*http.Response, error) {
		r.Host = "mta-sts.example.com"
		return tr.RoundTrip(r)
	})
	ctx := context.Background()
	p, err := f.Get(ctx, "Example.com.")
	if err != nil || p == nil || p.Mode != ModeEnforce || hits.Load() != 1 {
		t.Fatalf("first: %+v %v hits %d", p, err, hits.Load())
	}
	if p, _ := f.Get(ctx, "example.com"); p == nil || hits.Load() != 1 {
		t.Fatalf("cached: %+v hits %d", p, hits.Load())
	}
	// a new id: refetched
	body.Store(strings.Replace(enforce, "mode: enforce", "mode: testing", 1))
	txt.Store([]string{"v=STSv1; id=20260102"})
	if p, _ := f.Get(ctx, "example.com"); p == nil || p.Mode != ModeTesting || hits.Load() != 2 {
		t.Fatalf("new id: %+v hits %d", p, hits.Load())
	}
	// the server fails: the cached policy stands until max_age
	txt.Store([]string{"v=STSv1; id=20260103"})
	status.Store(500)
	if p, err := f.Get(ctx, "example.com"); p == nil || p.Mode != ModeTesting || err != nil {
		t.Fatalf("failing server: %+v %v", p, err)
	}
	now = now.Add(25 * time.Hour)
	if p, err := f.Get(ctx, "example.com"); p != nil || err == nil || !strings.Contains(err.Error(), "HTTP 500") {
		t.Fatalf("expired and failing: %+v %v", p, err)
	}
	// no record, a DNS failure, two records: no policy
	for _, d := range []string{"nopolicy.example", "dnsfail.example"} {
		if p, _ := f.Get(ctx, d); p != nil {
			t.Errorf("%s: %+v", d, p)
		}
	}
	status.Store(200)
	txt.Store([]string{"v=STSv1; id=1", "v=STSv1; id=2"})
	if p, err := f.Get(ctx, "example.com"); p != nil || err != nil {
		t.Errorf("two records: %+v %v", p, err)
	}
	// redirects are not followed
	txt.Store([]string{"v=STSv1; id=9"})
	f.URL = func(string) string { return srv.URL + "/.well-known/mta-sts.txt?redirect=1" }
	if p, err := f.Get(ctx, "example.com"); p != nil || err == nil || !strings.Contains(err.Error(), "redirects") {
		t.Errorf("redirect: %+v %v", p, err)
	}
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func FuzzParse(f *testing.F) {
	f.Add(enforce)
	f.Add("version: STSv1\nmode: none\nmax_age: 0")
	f.Fuzz(func(t *testing.T, s string) {
		p, err := Parse(s)
		if err == nil && (p.MaxAge < 0 || (p.Mode != ModeNone && len(p.MX) == 0)) {
			t.Fatalf("%+v", p)
		}
		if err == nil {
			p.Matches("mx.example.com")
		}
	})
}

func TestSetTest(t *testing.T) {
	lookups := 0
	f := &Fetcher{LookupTXT: func(context.Context, string) ([]string, error) { lookups++; return nil, nil }}
	p, _ := Parse(enforce)
	f.SetTest(map[string]*Policy{"Example.COM.": p})
	if got, err := f.Get(context.Background(), "example.com"); got != p || err != nil {
		t.Fatalf("%+v %v", got, err)
	}
	if got, err := f.Get(context.Background(), "other.example"); got != nil || err != nil || lookups != 0 {
		t.Fatalf("other domain: %+v %v, %d lookups", got, err, lookups)
	}
}
