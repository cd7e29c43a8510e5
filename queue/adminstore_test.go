package queue

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/kumogo/kumogo/internal/adminapi"
	"github.com/kumogo/kumogo/internal/message"
)

func strp(s string) *string { return &s }

// TestAdminSelectionMatches: a selection matches a scheduled queue name by
// each field it sets; queue_names, when given, decide alone.
func TestAdminSelectionMatches(t *testing.T) {
	cases := []struct {
		sel   adminapi.Selection
		queue string
		want  bool
	}{
		{adminapi.Selection{}, "camp:ten@example.com!rd.example", true},
		{adminapi.Selection{Domain: strp("Example.COM")}, "example.com", true},
		{adminapi.Selection{Domain: strp("example.com")}, "other.com", false},
		{adminapi.Selection{Tenant: strp("ten")}, "camp:ten@example.com", true},
		{adminapi.Selection{Tenant: strp("ten")}, "example.com", false},
		{adminapi.Selection{Campaign: strp("camp"), Domain: strp("example.com")}, "camp:ten@example.com", true},
		{adminapi.Selection{Campaign: strp("camp"), Domain: strp("example.com")}, "other:ten@example.com", false},
		{adminapi.Selection{RoutingDomain: strp("rd.example")}, "example.com!rd.example", true},
		{adminapi.Selection{RoutingDomain: strp("rd.example")}, "example.com", false},
		{adminapi.Selection{Domain: strp("x"), QueueNames: []string{"example.com"}}, "example.com", true},
		{adminapi.Selection{QueueNames: []string{"example.com"}}, "b.example.com", false},
	}
	for _, c := range cases {
		parts := message.ParseQueueName(c.queue)
		if got := matches(&c.sel, c.queue, &parts); got != c.want {
			t.Errorf("%+v on %q: %v, want %v", c.sel, c.queue, got, c.want)
		}
	}
}

// TestAdminRulesPersist: the rules written at one start are read at the
// next, without the expired ones; a file that does not parse is set aside.
func TestAdminRulesPersist(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kumogo-admin.json")
	a := &adminRules{path: path, log: zerolog.Nop()}
	now := time.Now()
	a.file.Suspensions = []*suspendRule{
		{ID: "live", Sel: adminapi.Selection{Domain: strp("example.com")}, Reason: "r", Expires: now.Add(time.Hour)},
		{ID: "old", Reason: "r", Expires: now.Add(-time.Second)},
	}
	a.file.Bounces = []*bounceRule{{ID: "b", Reason: "gone", Expires: now.Add(time.Hour), Bounced: map[string]int{"q": 3}}}
	a.file.ReadySuspensions = []*readySuspendRule{{ID: "rq", Name: "s->site@smtp_client", Reason: "r", Expires: now.Add(time.Hour)}}
	if err := a.save(); err != nil {
		t.Fatal(err)
	}
	b := &adminRules{path: path, log: zerolog.Nop()}
	if err := b.load(); err != nil {
		t.Fatal(err)
	}
	if b.n.Load() != 3 || len(b.file.Suspensions) != 1 || b.file.Suspensions[0].ID != "live" ||
		b.file.Bounces[0].Bounced["q"] != 3 || b.file.ReadySuspensions[0].Name != "s->site@smtp_client" {
		t.Fatalf("loaded %+v", b.file)
	}
	if r := b.suspensionFor("example.com", time.Now()); r == nil || r.ID != "live" {
		t.Fatalf("suspensionFor: %+v", r)
	}
	if err := os.WriteFile(path, []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := &adminRules{path: path, log: zerolog.Nop()}
	if err := c.load(); err != nil || c.n.Load() != 0 {
		t.Fatalf("corrupt file: %v %d", err, c.n.Load())
	}
	if _, err := os.Stat(path + ".corrupt"); err != nil {
		t.Fatalf("corrupt file not set aside: %v", err)
	}
}
