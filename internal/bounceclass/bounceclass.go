// Package bounceclass sorts SMTP responses into bounce classes with rule
// files in KumoMTA's format (kumo.configure_bounce_classifier, and
// KumoMTA's "Configuring Bounce Classification" page):
//
//	[rules]
//	InvalidRecipient = ["^(451|550) [45]\\.1\\.[1234] "]
//	QuotaIssues = ["^552 [45]\\.2\\.2 "]
//
// Each key of the rules table is a class (one of KumoMTA's predefined
// classes, or any name of the user's), each value a list of regular
// expressions matched against the response on one line, "<code> <x.y.z>
// <text>". The first rule that matches wins, in the order of the files,
// of the classes in a file and of the rules of a class; nothing matching
// is "Uncategorized". Files ending in .json hold the same object as JSON.
// The expressions are RE2 (Go's regexp), which accepts the syntax of
// KumoMTA's Rust regex crate for everything but look-around, which
// neither supports.
package bounceclass

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"

	"github.com/BurntSushi/toml"
)

// Uncategorized is the class of a response no rule matches.
const Uncategorized = "Uncategorized"

// DefaultCacheSize is KumoMTA's cache_size default: classified responses
// remembered, so a busy site's repeated answers skip the rules.
const DefaultCacheSize = 1024

type rule struct {
	class string
	re    *regexp.Regexp
}

// Classifier classifies responses. It is safe for concurrent use.
type Classifier struct {
	rules []rule

	mu        sync.Mutex
	cache     map[string]string
	cacheSize int
}

// Load compiles the rule files, in order. cacheSize bounds the cache of
// classified responses (DefaultCacheSize when 0).
func Load(files []string, cacheSize int) (*Classifier, error) {
	if len(files) == 0 {
		return nil, fmt.Errorf("bounce classifier: no rule files")
	}
	if cacheSize <= 0 {
		cacheSize = DefaultCacheSize
	}
	c := &Classifier{cache: map[string]string{}, cacheSize: cacheSize}
	for _, f := range files {
		if err := c.add(f); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// ruleFile is the content of a rule file, with the classes in file order.
type ruleFile struct {
	order []string
	rules map[string][]string
}

func (c *Classifier) add(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("bounce classifier: reading %w", err)
	}
	var rf ruleFile
	if strings.HasSuffix(path, ".json") {
		rf, err = decodeJSON(b)
	} else {
		rf, err = decodeTOML(b)
	}
	if err != nil {
		return fmt.Errorf("bounce classifier: decoding %s: %w", path, err)
	}
	for _, class := range rf.order {
		for _, expr := range rf.rules[class] {
			re, err := regexp.Compile(expr)
			if err != nil {
				return fmt.Errorf("bounce classifier: %s: class %s: %w", path, class, err)
			}
			c.rules = append(c.rules, rule{class: class, re: re})
		}
	}
	return nil
}

func decodeTOML(b []byte) (ruleFile, error) {
	var v struct {
		Rules map[string][]string `toml:"rules"`
	}
	md, err := toml.Decode(string(b), &v)
	if err != nil {
		return ruleFile{}, err
	}
	if v.Rules == nil {
		return ruleFile{}, fmt.Errorf("missing table `rules`")
	}
	rf := ruleFile{rules: v.Rules}
	for _, k := range md.Keys() { // in file order
		if len(k) == 2 && k[0] == "rules" {
			rf.order = append(rf.order, k[1])
		}
	}
	return rf, nil
}

func decodeJSON(b []byte) (ruleFile, error) {
	var v struct {
		Rules json.RawMessage `json:"rules"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return ruleFile{}, err
	}
	if v.Rules == nil {
		return ruleFile{}, fmt.Errorf("missing field `rules`")
	}
	rf := ruleFile{rules: map[string][]string{}}
	if err := json.Unmarshal(v.Rules, &rf.rules); err != nil {
		return ruleFile{}, err
	}
	// the class order is the order of the object's keys
	dec := json.NewDecoder(bytes.NewReader(v.Rules))
	if _, err := dec.Token(); err != nil { // {
		return ruleFile{}, err
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return ruleFile{}, err
		}
		rf.order = append(rf.order, tok.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return ruleFile{}, err
		}
	}
	return rf, nil
}

// Classify returns the class of response, given on one line as
// "<code> <x.y.z> <text>".
func (c *Classifier) Classify(response string) string {
	c.mu.Lock()
	class, ok := c.cache[response]
	c.mu.Unlock()
	if ok {
		return class
	}
	class = Uncategorized
	for _, r := range c.rules {
		if r.re.MatchString(response) {
			class = r.class
			break
		}
	}
	c.mu.Lock()
	if len(c.cache) >= c.cacheSize {
		clear(c.cache) // cheaper than an LRU, and a busy site refills it at once
	}
	c.cache[response] = class
	c.mu.Unlock()
	return class
}
