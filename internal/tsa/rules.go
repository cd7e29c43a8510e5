// Package tsa is kumogo's traffic shaping automation: it evaluates the
// `automation` rules of shaping files against delivery log records that
// nodes publish, keeps the resulting suspensions and configuration
// overrides in an embedded SQLite database, and serves them back to the
// nodes over KumoMTA's tsa-daemon HTTP endpoints (KumoMTA's user guide,
// "Traffic Shaping Automation"; reference, "kumo.shaping.load").
package tsa

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"time"

	"github.com/kumogo/kumogo/internal/duration"
	"github.com/kumogo/kumogo/internal/shaping"
	"github.com/kumogo/kumogo/internal/throttle"
)

// Action kinds of an automation rule.
const (
	ActSuspend          = "Suspend"
	ActSuspendTenant    = "SuspendTenant"
	ActSuspendCampaign  = "SuspendCampaign"
	ActSetConfig        = "SetConfig"
	ActSetDomainConfig  = "SetDomainConfig"
	ActBounce           = "Bounce"
	ActBounceTenant     = "BounceTenant"
	ActBounceCampaign   = "BounceCampaign"
	internalReplyPrefix = "KumoMTA internal: "
)

// Action is one action of a rule. Name and Value are set for SetConfig
// and SetDomainConfig.
type Action struct {
	Kind  string
	Name  string
	Value any
}

// Rule is a parsed automation rule.
type Rule struct {
	Regex         *regexp.Regexp
	Actions       []Action
	Threshold     *throttle.Spec // nil: Immediate
	Duration      time.Duration
	MatchInternal bool
	Rollup        bool   // effects keyed by site rather than domain
	Hash          string // identifies the rule (its fields)
}

// Matches reports whether the rule applies to a response (its single
// line form, "421 4.7.28 text"). Internal responses (whose text starts
// with "KumoMTA internal: ") only match with match_internal = true.
func (r *Rule) Matches(internal bool, response string) bool {
	if internal && !r.MatchInternal {
		return false
	}
	return r.Regex.MatchString(response)
}

// ParseRule decodes one automation table. The regex is Go's RE2 syntax;
// KumoMTA uses fancy-regex, whose look-around and backreferences are not
// supported here and fail the rule with an error.
func ParseRule(ar shaping.AutomationRule) (*Rule, error) {
	f := ar.Fields
	r := &Rule{Rollup: ar.Rollup}
	src, ok := f["regex"].(string)
	if !ok {
		return nil, fmt.Errorf("automation: regex: expected a string")
	}
	re, err := regexp.Compile(src)
	if err != nil {
		return nil, fmt.Errorf("automation: regex %q: %w", src, err)
	}
	r.Regex = re
	if r.Actions, err = parseActions(f["action"]); err != nil {
		return nil, err
	}
	ds, ok := f["duration"].(string)
	if !ok {
		return nil, fmt.Errorf("automation: duration: expected a string")
	}
	if r.Duration, err = duration.Parse(ds); err != nil {
		return nil, fmt.Errorf("automation: duration: %w", err)
	}
	switch t := f["trigger"].(type) {
	case nil:
	case string:
		if t != "Immediate" {
			return nil, fmt.Errorf("automation: trigger: unknown variant `%s`, expected `Immediate` or `Threshold`", t)
		}
	case map[string]any:
		spec, ok := t["Threshold"].(string)
		if !ok || len(t) != 1 {
			return nil, fmt.Errorf("automation: trigger: expected {Threshold=\"N/period\"}")
		}
		s, err := throttle.Parse(spec)
		if err != nil {
			return nil, fmt.Errorf("automation: trigger: %w", err)
		}
		r.Threshold = &s
	default:
		return nil, fmt.Errorf("automation: trigger: expected a string or a table")
	}
	if mi, ok := f["match_internal"]; ok {
		b, ok := mi.(bool)
		if !ok {
			return nil, fmt.Errorf("automation: match_internal: expected a boolean")
		}
		r.MatchInternal = b
	}
	b, _ := json.Marshal(sortedFields(f))
	sum := sha256.Sum256(b)
	r.Hash = hex.EncodeToString(sum[:8])
	return r, nil
}

func sortedFields(f map[string]any) [][2]any {
	keys := make([]string, 0, len(f))
	for k := range f {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([][2]any, 0, len(keys))
	for _, k := range keys {
		out = append(out, [2]any{k, f[k]})
	}
	return out
}

func parseActions(v any) ([]Action, error) {
	switch a := v.(type) {
	case []any:
		var out []Action
		for _, item := range a {
			one, err := parseActions(item)
			if err != nil {
				return nil, err
			}
			out = append(out, one...)
		}
		return out, nil
	case string:
		switch a {
		case ActSuspend, ActSuspendTenant, ActSuspendCampaign, ActBounce, ActBounceTenant, ActBounceCampaign:
			return []Action{{Kind: a}}, nil
		}
		return nil, fmt.Errorf("automation: action: unknown variant `%s`", a)
	case map[string]any:
		if len(a) != 1 {
			return nil, fmt.Errorf("automation: action: expected one of {SetConfig=...}, {SetDomainConfig=...}")
		}
		for k, body := range a {
			if k != ActSetConfig && k != ActSetDomainConfig {
				return nil, fmt.Errorf("automation: action: unknown variant `%s`", k)
			}
			m, ok := body.(map[string]any)
			name, nok := m["name"].(string)
			val, vok := m["value"]
			if !ok || !nok || !vok {
				return nil, fmt.Errorf("automation: action: %s needs name and value", k)
			}
			return []Action{{Kind: k, Name: name, Value: val}}, nil
		}
	}
	return nil, fmt.Errorf("automation: action: expected a string or a table")
}
