package tsa

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/kumogo/kumogo/internal/shaping"
	"github.com/kumogo/kumogo/internal/smtpreply"
)

// Record is the part of a JSON log record (KumoMTA's JsonLogRecord, as
// kumogo's log hooks produce it) that automation looks at.
type Record struct {
	Type         string             `json:"type"`
	Recipient    json.RawMessage    `json:"recipient"`
	Queue        string             `json:"queue"`
	Site         string             `json:"site"`
	Response     smtpreply.Response `json:"response"`
	Timestamp    int64              `json:"timestamp"`
	EgressSource string             `json:"egress_source"`
	Tenant       *string            `json:"tenant"`
	Campaign     *string            `json:"campaign"`
}

// recipients returns the record's recipients: a string or a list.
func (r *Record) recipients() []string {
	var one string
	if json.Unmarshal(r.Recipient, &one) == nil {
		return []string{one}
	}
	var many []string
	_ = json.Unmarshal(r.Recipient, &many)
	return many
}

// tenantCampaign returns the record's tenant and campaign, from its fields
// or else from its queue name (campaign:tenant@domain).
func (r *Record) tenantCampaign() (tenant, campaign string) {
	if r.Tenant != nil {
		tenant = *r.Tenant
	}
	if r.Campaign != nil {
		campaign = *r.Campaign
	}
	if tenant != "" || campaign != "" {
		return tenant, campaign
	}
	q := r.Queue
	if i := strings.LastIndexByte(q, '!'); i >= 0 {
		q = q[:i]
	}
	at := strings.LastIndexByte(q, '@')
	if at < 0 {
		return "", ""
	}
	q = q[:at]
	if c := strings.IndexByte(q, ':'); c >= 0 {
		return q[c+1:], q[:c]
	}
	return q, ""
}

// LoadShaping returns the current shaping data (the tsa_load_shaping_data
// event).
type LoadShaping func(ctx context.Context) (*shaping.Shaping, error)

// Daemon applies automation rules to published records.
type Daemon struct {
	store *Store
	load  LoadShaping
	now   func() time.Time

	mu    sync.Mutex
	rules map[*shaping.Shaping]map[string]*Rule // parsed rules per loaded data

	hub  hub           // websocket subscribers (subscribe.go)
	done chan struct{} // closed by Close
	once sync.Once
}

// Close ends the websocket subscriptions (an http.Server's Shutdown does
// not wait for them).
func (d *Daemon) Close() {
	d.once.Do(func() { close(d.done) })
}

// New returns a daemon over store; now is time.Now when nil.
func New(store *Store, load LoadShaping, now func() time.Time) *Daemon {
	if now == nil {
		now = time.Now
	}
	return &Daemon{store: store, load: load, now: now, rules: map[*shaping.Shaping]map[string]*Rule{}, done: make(chan struct{})}
}

// Store returns the daemon's database.
func (d *Daemon) Store() *Store { return d.store }

// Now returns the daemon's clock.
func (d *Daemon) Now() time.Time { return d.now() }

// parsed caches ParseRule per loaded shaping object (the tsa_load_shaping_data
// handler usually memoizes, so the same object comes back).
func (d *Daemon) parsed(sh *shaping.Shaping, ar shaping.AutomationRule) (*Rule, error) {
	key, _ := json.Marshal(sortedFields(ar.Fields))
	k := fmt.Sprintf("%t/%s", ar.Rollup, key)
	d.mu.Lock()
	defer d.mu.Unlock()
	m := d.rules[sh]
	if m == nil {
		if len(d.rules) > 4 {
			clear(d.rules)
		}
		m = map[string]*Rule{}
		d.rules[sh] = m
	}
	if r, ok := m[k]; ok {
		return r, nil
	}
	r, err := ParseRule(ar)
	if err != nil {
		return nil, err
	}
	m[k] = r
	return r, nil
}

// siteName strips the egress path decoration ("source->" and
// "@smtp_client") from a record's site, leaving the MX site name.
func siteName(site, source string) string {
	site = strings.TrimPrefix(site, source+"->")
	return strings.TrimSuffix(site, "@smtp_client")
}

// Publish evaluates one record. Only outcomes of delivery attempts
// (TransientFailure and Bounce) are considered.
func (d *Daemon) Publish(ctx context.Context, rec Record) error {
	if rec.Type != "TransientFailure" && rec.Type != "Bounce" {
		return nil
	}
	sh, err := d.load(ctx)
	if err != nil {
		return fmt.Errorf("tsa_load_shaping_data: %w", err)
	}
	if sh == nil {
		return fmt.Errorf("tsa_load_shaping_data returned no shaping data")
	}
	now := d.now()
	source := rec.EgressSource
	if source == "" {
		source = "unspecified"
	}
	site := siteName(rec.Site, source)
	response := rec.Response.String()
	internal := strings.HasPrefix(rec.Response.Content, internalReplyPrefix)
	ts := now
	if rec.Timestamp > 0 {
		ts = time.Unix(rec.Timestamp, 0)
	}
	tenant, campaign := rec.tenantCampaign()
	for _, rcpt := range rec.recipients() {
		at := strings.LastIndexByte(rcpt, '@')
		if at < 0 {
			continue // postmaster: no automation
		}
		domain := strings.ToLower(rcpt[at+1:])
		for _, ar := range sh.AutomationRules(ctx, domain, site) {
			rule, err := d.parsed(sh, ar)
			if err != nil {
				return err
			}
			if !rule.Matches(internal, response) {
				continue
			}
			expires := ts.Add(rule.Duration)
			if !expires.After(now) {
				continue
			}
			if rule.Threshold != nil {
				scope := rule.Hash + "|" + site + "|" + source
				if !rule.Rollup {
					scope += "|" + domain
				}
				n, err := d.store.recordEvent(ctx, scope, now, rule.Threshold.Period)
				if err != nil {
					return fmt.Errorf("tsa: recording event: %w", err)
				}
				if uint64(n) < rule.Threshold.Limit {
					continue
				}
			}
			for _, act := range rule.Actions {
				if err := d.enact(ctx, rule, act, effect{
					site: site, source: source, domain: domain, tenant: tenant, campaign: campaign,
					reason: response, expires: expires,
				}); err != nil {
					return fmt.Errorf("tsa: %s: %w", act.Kind, err)
				}
			}
		}
	}
	return nil
}

type effect struct {
	site, source, domain, tenant, campaign, reason string
	expires                                        time.Time
}

func (d *Daemon) enact(ctx context.Context, rule *Rule, act Action, e effect) error {
	v, err := d.store.put(ctx, rule, act, e)
	if err == nil && v != nil {
		d.hub.broadcast(v)
	}
	return err
}
