package tsa

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kumogo/kumogo/internal/shaping"
)

const shapingTOML = `
["rolled.example"]
max_deliveries_per_connection = 5

[["rolled.example".automation]]
regex = "4\\.7\\.28 .*rate limited"
action = "Suspend"
duration = "2 hours"

["plain.example"]
mx_rollup = false

[["plain.example".automation]]
regex = "RL0000"
action = {SetConfig={name="max_connection_rate", value="10000/h"}}
trigger = {Threshold="3/hr"}
duration = "2 hours"

[["plain.example".automation]]
regex = "not authenticated"
action = ["SuspendTenant", "SuspendCampaign"]
duration = "1 hour"
match_internal = true

[["plain.example".automation]]
regex = "mailbox gone"
action = ["Bounce", "BounceCampaign"]
duration = "10 minutes"

[["plain.example".automation]]
regex = "shedding"
action = "Suspend"
duration = "30 minutes"
`

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func loadShaping(t *testing.T, files ...string) LoadShaping {
	t.Helper()
	env := shaping.Env{
		Resolve: func(_ context.Context, d string) (shaping.MX, error) {
			switch d {
			case "rolled.example", "alias.example":
				return shaping.MX{SiteName: "mx.rolled.example", Hosts: []string{"mx.rolled.example."}}, nil
			case "plain.example":
				return shaping.MX{SiteName: "mx.plain.example", Hosts: []string{"mx.plain.example."}}, nil
			}
			return shaping.MX{}, errors.New("NXDOMAIN")
		},
		ValidatePath: func(map[string]any) error { return nil },
	}
	sh, err := shaping.Load(context.Background(), files, shaping.DefaultOptions(), env)
	if err != nil {
		t.Fatal(err)
	}
	return func(context.Context) (*shaping.Shaping, error) { return sh, nil }
}

type fixture struct {
	t     *testing.T
	clk   *clock
	url   string
	store *Store
	path  string
	d     *Daemon
}

func newFixture(t *testing.T, dbPath string) *fixture {
	t.Helper()
	dir := t.TempDir()
	f := filepath.Join(dir, "shaping.toml")
	if err := os.WriteFile(f, []byte(shapingTOML), 0o644); err != nil {
		t.Fatal(err)
	}
	if dbPath == "" {
		dbPath = filepath.Join(dir, "tsa.db")
	}
	store, err := OpenStore(context.Background(), dbPath)
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)}
	d := New(store, loadShaping(t, f), clk.now)
	srv := httptest.NewServer(d.Handler(nil))
	t.Cleanup(func() { d.Close(); srv.Close(); store.Close() })
	return &fixture{t: t, clk: clk, url: srv.URL, store: store, path: dbPath, d: d}
}

func (f *fixture) publish(rec map[string]any) {
	f.t.Helper()
	if _, ok := rec["timestamp"]; !ok {
		rec["timestamp"] = f.clk.now().Unix()
	}
	b, _ := json.Marshal(rec)
	resp, err := http.Post(f.url+"/publish_log_v1", "application/json", bytes.NewReader(b))
	if err != nil {
		f.t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		f.t.Fatalf("publish: %d %s", resp.StatusCode, body)
	}
}

func (f *fixture) get(path string) string {
	f.t.Helper()
	resp, err := http.Get(f.url + path)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		f.t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
	}
	return string(b)
}

func (f *fixture) suspensions() Suspensions {
	f.t.Helper()
	var s Suspensions
	if err := json.Unmarshal([]byte(f.get("/get_suspension_v1/suspended.json")), &s); err != nil {
		f.t.Fatal(err)
	}
	return s
}

func failure(rcpt, site, source, code, enh, text string) map[string]any {
	parts := strings.Split(enh, ".")
	var e any
	if len(parts) == 3 {
		e = map[string]any{"class": atoi(parts[0]), "subject": atoi(parts[1]), "detail": atoi(parts[2])}
	}
	return map[string]any{
		"type": "TransientFailure", "recipient": rcpt, "queue": "camp1:tenant1@" + rcpt[strings.IndexByte(rcpt, '@')+1:],
		"site": source + "->" + site + "@smtp_client", "egress_source": source,
		"response": map[string]any{"code": atoi(code), "enhanced_code": e, "content": text, "command": "."},
	}
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}

// A matching response on a rolled-up domain suspends its site from the
// triggering source only, until the record's time plus the duration; the
// row survives a restart of the daemon and disappears once expired.
func TestSuspendImmediatePersistsAndExpires(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "tsa.db")
	f := newFixture(t, db)
	f.publish(failure("a@rolled.example", "mx.rolled.example", "ip-1", "421", "4.7.0", "try later"))
	if s := f.suspensions(); len(s.ReadyQ) != 0 {
		t.Fatalf("non-matching response suspended: %+v", s)
	}
	f.publish(failure("a@rolled.example", "mx.rolled.example", "ip-1", "421", "4.7.28", "mx.rolled.example rate limited"))
	s := f.suspensions()
	if len(s.ReadyQ) != 1 || len(s.SchedQ) != 0 {
		t.Fatalf("want one ready queue suspension, got %+v", s)
	}
	got := s.ReadyQ[0]
	want := f.clk.now().Add(2 * time.Hour)
	if got.SiteName != "mx.rolled.example" || got.Source != "ip-1" || !got.Expires.Equal(want) ||
		got.Reason != "421 4.7.28 mx.rolled.example rate limited" || got.RuleHash == "" {
		t.Fatalf("suspension %+v, want site mx.rolled.example source ip-1 expires %v", got, want)
	}
	// A second match extends rather than duplicates.
	f.clk.add(time.Minute)
	f.publish(failure("b@rolled.example", "mx.rolled.example", "ip-1", "421", "4.7.28", "mx.rolled.example rate limited"))
	s = f.suspensions()
	if len(s.ReadyQ) != 1 || !s.ReadyQ[0].Expires.Equal(want.Add(time.Minute)) {
		t.Fatalf("after a second match: %+v", s)
	}

	// Restart: a new daemon over the same file serves the same row.
	f.store.Close()
	f2 := newFixture(t, db)
	f2.clk.t = f.clk.now()
	if s := f2.suspensions(); len(s.ReadyQ) != 1 || s.ReadyQ[0].SiteName != "mx.rolled.example" {
		t.Fatalf("after reopening the database: %+v", s)
	}
	f2.clk.add(2*time.Hour + time.Minute)
	if s := f2.suspensions(); len(s.ReadyQ) != 0 {
		t.Fatalf("expired suspension still served: %+v", s)
	}
}

// A Threshold trigger acts on the Nth match within the period; the
// override is served as a shaping file that kumo.shaping.load reads back.
func TestThresholdSetConfig(t *testing.T) {
	f := newFixture(t, "")
	for i := 0; i < 2; i++ {
		f.publish(failure("x@plain.example", "mx.plain.example", "ip-2", "421", "4.7.0", "RL0000 slow down"))
		f.clk.add(time.Minute)
	}
	if body := f.get("/get_config_v1/shaping.toml"); !strings.Contains(body, "# Number of entries: 0") {
		t.Fatalf("override before the threshold:\n%s", body)
	}
	// Matches older than the period do not count.
	f.clk.add(time.Hour)
	f.publish(failure("x@plain.example", "mx.plain.example", "ip-2", "421", "4.7.0", "RL0000 slow down"))
	if body := f.get("/get_config_v1/shaping.toml"); !strings.Contains(body, "# Number of entries: 0") {
		t.Fatalf("stale matches counted:\n%s", body)
	}
	f.publish(failure("x@plain.example", "mx.plain.example", "ip-2", "421", "4.7.0", "RL0000 slow down"))
	f.publish(failure("x@plain.example", "mx.plain.example", "ip-2", "421", "4.7.0", "RL0000 slow down"))
	body := f.get("/get_config_v1/shaping.toml")
	if !strings.Contains(body, "# Number of entries: 1") || !strings.Contains(body, `["plain.example"]`) ||
		!strings.Contains(body, "mx_rollup = false") || !strings.Contains(body, `max_connection_rate = "10000/h"`) {
		t.Fatalf("override:\n%s", body)
	}
	p := filepath.Join(t.TempDir(), "over.toml")
	os.WriteFile(p, []byte(body), 0o644)
	sh, err := loadShaping(t, p)(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	cfg := sh.EgressPathConfig(context.Background(), "plain.example", "ip-2", "mx.plain.example")
	if cfg["max_connection_rate"] != "10000/h" {
		t.Fatalf("override read back: %v", cfg)
	}
	if cfg := sh.EgressPathConfig(context.Background(), "plain.example", "ip-3", "mx.plain.example"); cfg["max_connection_rate"] != nil {
		t.Fatalf("override leaked to another source: %v", cfg)
	}
}

// SuspendTenant/SuspendCampaign take tenant and campaign from the queue
// name; internal responses only match with match_internal.
func TestTenantCampaignAndInternal(t *testing.T) {
	f := newFixture(t, "")
	f.publish(failure("x@plain.example", "mx.plain.example", "ip-1", "550", "5.7.1", "KumoMTA internal: not authenticated"))
	s := f.suspensions()
	if len(s.SchedQ) != 2 {
		t.Fatalf("want tenant and campaign suspensions, got %+v", s)
	}
	var tenantOnly, withCampaign bool
	for _, q := range s.SchedQ {
		if q.Tenant != "tenant1" || q.Domain != "plain.example" {
			t.Fatalf("sched suspension %+v", q)
		}
		if q.Campaign == nil {
			tenantOnly = true
		} else if *q.Campaign == "camp1" {
			withCampaign = true
		}
	}
	if !tenantOnly || !withCampaign {
		t.Fatalf("sched suspensions %+v", s.SchedQ)
	}
	// match_internal is false on this rule: the internal text does not match.
	f.publish(failure("x@plain.example", "mx.plain.example", "ip-1", "451", "4.4.5", "KumoMTA internal: shedding"))
	if s := f.suspensions(); len(s.ReadyQ) != 0 {
		t.Fatalf("internal response matched a rule without match_internal: %+v", s)
	}
	f.publish(failure("x@plain.example", "mx.plain.example", "ip-1", "451", "4.4.5", "shedding load"))
	if s := f.suspensions(); len(s.ReadyQ) != 1 || s.ReadyQ[0].SiteName != "mx.plain.example" {
		t.Fatalf("remote response: %+v", s)
	}
	// Deliveries and receptions are not evaluated.
	rec := failure("x@rolled.example", "mx.rolled.example", "ip-9", "250", "", "rate limited 4.7.28 ok")
	rec["type"] = "Delivery"
	f.publish(rec)
	if s := f.suspensions(); len(s.ReadyQ) != 1 {
		t.Fatalf("a Delivery record was evaluated: %+v", s)
	}
}

func TestTrustedHostsAndBadRecords(t *testing.T) {
	f := newFixture(t, "")
	d := New(f.store, loadShaping(t), nil)
	none := httptest.NewServer(d.Handler(func(netip.Addr) bool { return false }))
	defer none.Close()
	resp, err := http.Get(none.URL + "/tsa/status")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("untrusted peer: %d", resp.StatusCode)
	}
	if got := f.get("/tsa/status"); got != "OK\n" {
		t.Fatalf("status %q", got)
	}
	resp, err = http.Post(f.url+"/publish_log_v1", "application/json", strings.NewReader("{nope"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnprocessableEntity {
		t.Fatalf("bad JSON: %d", resp.StatusCode)
	}
}

func TestParseRuleErrors(t *testing.T) {
	for _, tc := range []struct {
		fields map[string]any
		want   string
	}{
		{map[string]any{"regex": "(", "action": "Suspend", "duration": "1h"}, "regex"},
		{map[string]any{"regex": "x", "action": "Explode", "duration": "1h"}, "unknown variant `Explode`"},
		{map[string]any{"regex": "x", "action": "Suspend", "duration": "soon"}, "duration"},
		{map[string]any{"regex": "x", "action": "Suspend", "duration": "1h", "trigger": "Later"}, "trigger"},
		{map[string]any{"regex": "x", "action": "Suspend", "duration": "1h", "trigger": map[string]any{"Threshold": "x/y"}}, "trigger"},
		{map[string]any{"regex": "x", "action": map[string]any{"SetConfig": map[string]any{"name": "a"}}, "duration": "1h"}, "name and value"},
	} {
		_, err := ParseRule(shaping.AutomationRule{Fields: tc.fields})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err %v, want %q", tc.fields, err, tc.want)
		}
	}
}

// Bounce actions are served by /get_bounce_v1/bounced.json: Bounce for
// the whole domain, BounceCampaign with the record's tenant and campaign.
func TestBounceActions(t *testing.T) {
	f := newFixture(t, "")
	f.publish(failure("x@plain.example", "mx.plain.example", "ip-1", "550", "5.1.1", "mailbox gone"))
	var b []SchedQBounce
	if err := json.Unmarshal([]byte(f.get("/get_bounce_v1/bounced.json")), &b); err != nil {
		t.Fatal(err)
	}
	if len(b) != 2 {
		t.Fatalf("bounces %+v", b)
	}
	var domainWide, campaign bool
	for _, e := range b {
		if e.Domain != "plain.example" || !e.Expires.Equal(f.clk.now().Add(10*time.Minute)) {
			t.Fatalf("bounce %+v", e)
		}
		switch {
		case e.Tenant == nil && e.Campaign == nil:
			domainWide = true
		case e.Tenant != nil && *e.Tenant == "tenant1" && e.Campaign != nil && *e.Campaign == "camp1":
			campaign = true
		}
	}
	if !domainWide || !campaign {
		t.Fatalf("bounces %+v", b)
	}
	f.clk.add(11 * time.Minute)
	if got := strings.TrimSpace(f.get("/get_bounce_v1/bounced.json")); got != "[]" {
		t.Fatalf("expired bounces served: %s", got)
	}
}

// TestConfigOverrideIntegerValue: an integer SetConfig value (a
// connection_limit of 1) is served as an integer, which the nodes'
// shaping loader accepts, not as 1.0 (JSON's float in the database).
func TestConfigOverrideIntegerValue(t *testing.T) {
	st, err := OpenStore(context.Background(), filepath.Join(t.TempDir(), "tsa.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	exp := time.Now().Add(time.Hour)
	for name, v := range map[string]any{"connection_limit": int64(1), "max_message_rate": "5/s", "x_float": 2.5,
		"additional_connection_limits": map[string]any{"l": int64(3)}} {
		if err := st.putConfig(ctx, ConfigOverride{RuleHash: name, Domain: "d.example", Source: "s", Name: name, Value: v, Expires: exp}); err != nil {
			t.Fatal(err)
		}
	}
	list, err := st.Configs(ctx, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	body := string(ExportConfigTOML(list))
	for _, want := range []string{"connection_limit = 1\n", `max_message_rate = "5/s"`, "x_float = 2.5", "additional_connection_limits = { l = 3 }"} {
		if !strings.Contains(body, want) {
			t.Fatalf("%q missing from\n%s", want, body)
		}
	}
	// and the nodes' loader reads every option back in its place
	p := filepath.Join(t.TempDir(), "over.toml")
	os.WriteFile(p, []byte(body), 0o644)
	sh, err := loadShaping(t, p)(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cfg := sh.EgressPathConfig(ctx, "d.example", "s", "mx.d.example")
	if fmt.Sprint(cfg["connection_limit"]) != "1" || cfg["max_message_rate"] != "5/s" || fmt.Sprint(cfg["additional_connection_limits"]) != "map[l:3]" {
		t.Fatalf("read back: %v", cfg)
	}
}
