package runtime

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// warmupPolicy is a shaping helper with a warm-up plan for source
// "new-ip" (start "start", four days of max_message_rate, three of
// source_selection_rate); nowExpr sets the helper's clock (Lua), "" keeps
// the real one.
func warmupPolicy(dir, start, nowExpr string) string {
	clock := ""
	if nowExpr != "" {
		clock = "shaping.now = function() return " + nowExpr + " end\n"
	}
	return `
local kumo = require 'kumo'
local shaping = require 'policy-extras.shaping'
` + clock + `
local shaper = shaping:setup_with_automation {
  no_default_files = true,
  extra_files = { '` + dir + `/shaping.toml' },
  warmup_files = { '` + dir + `/warmup.toml', { ['other-ip'] = { start = '2020-01-01', max_message_rate = { '1/day' } } } },
}
kumo.on('get_egress_path_config', shaper.get_egress_path_config)
`
}

const warmupShaping = `["warm.example"]
mx_rollup = false
max_message_rate = "100/s"
source_selection_rate = "1000/h"
`

func warmupFile(start string) string {
	return fmt.Sprintf(`["new-ip"]
start = %q
max_message_rate = ["500/day", "1000/day", "2,000/day", "4000/day"]
source_selection_rate = ["50/h", "100/h", "200/h"]
`, start)
}

// TestShapingWarmupSchedule: the rate in force for a source being warmed
// up follows its daily schedule by the (injected) date: day 1's values
// before and on the start date, day N's on day N, the shaping data's
// again after the plan's last day (per option); sources without a plan
// keep the shaping data's.
func TestShapingWarmupSchedule(t *testing.T) {
	dir := extrasDir(t, map[string]string{"shaping.toml": warmupShaping, "warmup.toml": warmupFile("2026-12-01")})
	ctx := context.Background()
	day := func(date string, hour int) string {
		d, err := time.Parse("2006-01-02", date)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprint(d.Add(time.Duration(hour) * time.Hour).Unix())
	}
	for _, tc := range []struct {
		now         string
		rate, selec string
	}{
		{day("2026-11-20", 12), "500/day", "50/h"},  // before the start: day 1
		{day("2026-12-01", 0), "500/day", "50/h"},   // day 1 from 00:00 UTC
		{day("2026-12-01", 23), "500/day", "50/h"},  // ... to 23:59
		{day("2026-12-02", 0), "1000/day", "100/h"}, // day 2
		{day("2026-12-03", 5), "2,000/day", "200/h"},
		{day("2026-12-04", 5), "4000/day", "1000/h"}, // selection plan over: the shaping data's
		{day("2026-12-05", 5), "100/s", "1000/h"},    // plan over
		{day("2027-03-01", 5), "100/s", "1000/h"},
	} {
		r := newRuntime(t, warmupPolicy(dir, "", tc.now), withExtras(&fakeDNS{}))
		p, err := r.GetEgressPathConfig(ctx, "warm.example", "new-ip", "mx.warm.example")
		if err != nil {
			t.Fatal(err)
		}
		if p.MaxMessageRate != tc.rate || p.SourceSelectionRate != tc.selec {
			t.Errorf("at %s: max_message_rate %q, source_selection_rate %q; want %q, %q",
				time.Unix(atoi64(t, tc.now), 0).UTC(), p.MaxMessageRate, p.SourceSelectionRate, tc.rate, tc.selec)
		}
		if p, err := r.GetEgressPathConfig(ctx, "warm.example", "old-ip", "mx.warm.example"); err != nil || p.MaxMessageRate != "100/s" {
			t.Errorf("a source with no plan: %q %v", p.MaxMessageRate, err)
		}
		r.Close()
	}
}

// TestShapingWarmupRealClock: with the helper's own clock, a plan that
// started yesterday is on its day 2.
func TestShapingWarmupRealClock(t *testing.T) {
	today := time.Now().UTC().Format("2006-01-02")
	start := time.Now().UTC().AddDate(0, 0, -1).Format("2006-01-02")
	dir := extrasDir(t, map[string]string{"shaping.toml": warmupShaping, "warmup.toml": warmupFile(start)})
	r := newRuntime(t, warmupPolicy(dir, start, ""), withExtras(&fakeDNS{}))
	p, err := r.GetEgressPathConfig(context.Background(), "warm.example", "new-ip", "mx.warm.example")
	if err != nil {
		t.Fatal(err)
	}
	if time.Now().UTC().Format("2006-01-02") != today {
		t.Skip("the date changed during the test")
	}
	if p.MaxMessageRate != "1000/day" {
		t.Fatalf("max_message_rate %q on day 2 of a plan that started %s", p.MaxMessageRate, start)
	}
}

// TestShapingWarmupErrors: a malformed plan fails setup with the file
// and source named.
func TestShapingWarmupErrors(t *testing.T) {
	for _, tc := range []struct{ file, want string }{
		{"[\"ip\"]\nstart = \"12/01/2026\"\nmax_message_rate = [\"1/day\"]\n", `warmup.toml: ip: start: expected a date like "2026-12-01"`},
		{"[\"ip\"]\nstart = \"2026-12-01\"\nmax_message_rate = \"1/day\"\n", "warmup.toml: ip: max_message_rate: expected a list of daily values"},
	} {
		dir := extrasDir(t, map[string]string{"shaping.toml": warmupShaping, "warmup.toml": tc.file})
		_, err := newRuntimeErr(t, warmupPolicy(dir, "", ""), withExtras(&fakeDNS{}))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("error %v, want %q", err, tc.want)
		}
	}
}

func atoi64(t *testing.T, s string) int64 {
	var n int64
	if _, err := fmt.Sscan(s, &n); err != nil {
		t.Fatal(err)
	}
	return n
}
