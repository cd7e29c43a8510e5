package main

import (
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/kumogo/kumogo/internal/duration"
	"github.com/kumogo/kumogo/internal/throttle"
)

// defaultDomains are the destination domains used when no --domain is given.
var defaultDomains = []string{"aol.com", "gmail.com", "hotmail.com", "yahoo.com"}

const (
	defaultTarget       = "127.0.0.1:2025"
	defaultDomainSuffix = "mx-sink.wezfurlong.org"
	defaultBodySize     = 1024
	defaultDuration     = 60 * time.Second
	defaultTimeout      = 60 * time.Second
)

// config holds the parsed command line.
type config struct {
	target       string
	concurrency  int
	duration     time.Duration
	messageCount uint64 // 0: no limit
	starttls     bool
	bodyFile     string
	bodySize     int
	domains      []weightedDomain
	domainSuffix string
	throttle     *throttle.Spec
	headers      []string
	keepGoing    bool
	bdat         bool
	json         bool
	timeout      time.Duration

	http                bool
	httpDeferSpool      bool
	httpDeferGeneration bool
	httpBatchSize       int
}

// weightedDomain is one --domain NAME[:WEIGHT].
type weightedDomain struct {
	name   string
	weight uint32
}

// domainList is the repeatable --domain flag.
type domainList struct{ list *[]weightedDomain }

func (d domainList) String() string {
	if d.list == nil {
		return ""
	}
	var parts []string
	for _, w := range *d.list {
		parts = append(parts, w.name+":"+strconv.FormatUint(uint64(w.weight), 10))
	}
	return strings.Join(parts, ",")
}

func (d domainList) Set(v string) error {
	w, err := parseDomain(v)
	if err != nil {
		return err
	}
	*d.list = append(*d.list, w)
	return nil
}

func parseDomain(v string) (weightedDomain, error) {
	name, weight, hasWeight := strings.Cut(strings.TrimSpace(v), ":")
	if name == "" {
		return weightedDomain{}, fmt.Errorf("domain %q: empty name", v)
	}
	w := weightedDomain{name: strings.ToLower(name), weight: 1}
	if hasWeight {
		n, err := strconv.ParseUint(weight, 10, 32)
		if err != nil || n == 0 {
			return weightedDomain{}, fmt.Errorf("domain %q: weight must be a positive integer", v)
		}
		w.weight = uint32(n)
	}
	return w, nil
}

// stringList is a repeatable string flag.
type stringList struct{ list *[]string }

func (s stringList) String() string {
	if s.list == nil {
		return ""
	}
	return strings.Join(*s.list, "; ")
}

func (s stringList) Set(v string) error {
	*s.list = append(*s.list, v)
	return nil
}

// funcValue adapts a parse function to flag.Value.
type funcValue struct {
	show string
	set  func(string) error
}

func (f *funcValue) String() string { return f.show }
func (f *funcValue) Set(v string) error {
	if err := f.set(v); err != nil {
		return err
	}
	f.show = v
	return nil
}

// parseSize parses a human size: "1024", "60kb", "1.5MB", "64KiB". The
// decimal units (k, kb, m, mb, g, gb) are powers of 1000, the binary ones
// (kib, mib, gib) powers of 1024.
func parseSize(s string) (int, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	num, unit := t[:i], strings.TrimSpace(t[i:])
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || num == "" {
		return 0, fmt.Errorf("size %q: not a number", s)
	}
	mult := map[string]float64{
		"": 1, "b": 1,
		"k": 1e3, "kb": 1e3, "kib": 1 << 10,
		"m": 1e6, "mb": 1e6, "mib": 1 << 20,
		"g": 1e9, "gb": 1e9, "gib": 1 << 30,
	}[unit]
	if mult == 0 {
		return 0, fmt.Errorf("size %q: unknown unit %q", s, unit)
	}
	v := math.Round(f * mult)
	if v > 1<<31 {
		return 0, fmt.Errorf("size %q: too large", s)
	}
	return int(v), nil
}

// parseSeconds parses a duration given as seconds ("60", "0.5") or as a
// humantime string ("90s", "2m").
func parseSeconds(s string) (time.Duration, error) {
	if f, err := strconv.ParseFloat(strings.TrimSpace(s), 64); err == nil {
		return duration.FromSeconds(f)
	}
	return duration.Parse(s)
}

// parseArgs parses the command line (without the program name).
func parseArgs(args []string, stderr io.Writer) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("traffic-gen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: traffic-gen [options]\n\nSMTP traffic generator (KumoMTA traffic-gen compatible).\n\nOptions:\n")
		fs.PrintDefaults()
	}
	fs.StringVar(&c.target, "target", defaultTarget, "SMTP target `HOST:PORT`")
	fs.IntVar(&c.concurrency, "concurrency", runtime.NumCPU()*10, "number of client connections")
	c.duration = defaultDuration
	fs.Var(&funcValue{show: "60", set: func(v string) (err error) {
		c.duration, err = parseSeconds(v)
		return err
	}}, "duration", "how long to generate for, in `SECS` (or 90s, 2m); also bounds --message-count")
	fs.Uint64Var(&c.messageCount, "message-count", 0, "send exactly `N` messages (0: no limit; --duration still applies)")
	fs.BoolVar(&c.starttls, "starttls", false, "use STARTTLS when offered (the certificate is not verified)")
	fs.StringVar(&c.bodyFile, "body-file", "", "send the contents of `PATH` as the whole message (line endings made CRLF)")
	c.bodySize = defaultBodySize
	fs.Var(&funcValue{show: "1024", set: func(v string) (err error) {
		c.bodySize, err = parseSize(v)
		return err
	}}, "body-size", "generate a body of at least `SIZE` bytes (1024, 60kb, 1MiB)")
	fs.Var(domainList{&c.domains}, "domain", "destination `NAME[:WEIGHT]` (repeatable; default aol.com, gmail.com, hotmail.com, yahoo.com)")
	fs.StringVar(&c.domainSuffix, "domain-suffix", defaultDomainSuffix, "appended as .`SUFFIX` to every domain ('' disables)")
	fs.Var(&funcValue{set: func(v string) error {
		s, err := throttle.Parse(v)
		if err != nil {
			return err
		}
		c.throttle = &s
		return nil
	}}, "throttle", "global send rate `SPEC`, e.g. 500/s, 10,000/h, 20/30m,max_burst=5")
	fs.Var(stringList{&c.headers}, "header", "extra header `\"Name: value\"` (repeatable)")
	fs.BoolVar(&c.keepGoing, "keep-going", false, "keep sending after errors instead of ending that client")
	fs.BoolVar(&c.bdat, "bdat", false, "send bodies with BDAT <n> LAST when the target offers CHUNKING")
	fs.BoolVar(&c.json, "json", false, "print the final summary as one JSON object on stdout")
	c.timeout = defaultTimeout
	fs.Var(&funcValue{show: "60", set: func(v string) (err error) {
		c.timeout, err = parseSeconds(v)
		return err
	}}, "timeout", "bound on connecting and on each SMTP transaction, in `SECS`")
	fs.BoolVar(&c.http, "http", false, "inject through the HTTP API (POST /api/inject/v1) instead of SMTP; --target is then a base URL (the default target maps to http://127.0.0.1:8000)")
	fs.BoolVar(&c.httpDeferSpool, "http-defer-spool", false, "with --http: set deferred_spool")
	fs.BoolVar(&c.httpDeferGeneration, "http-defer-generation", false, "with --http: set deferred_generation")
	fs.IntVar(&c.httpBatchSize, "http-batch-size", 1, "with --http: recipients per request")

	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if c.http {
		switch {
		case c.target == defaultTarget:
			c.target = "http://127.0.0.1:8000"
		case !strings.Contains(c.target, "://"):
			c.target = "http://" + c.target
		}
		if c.httpBatchSize < 1 {
			return nil, fmt.Errorf("--http-batch-size must be at least 1")
		}
	}
	if c.domainSuffix == "''" || c.domainSuffix == `""` {
		c.domainSuffix = "" // quotes that reached us literally
	}
	c.domainSuffix = strings.Trim(c.domainSuffix, ".")
	if len(c.domains) == 0 {
		for _, d := range defaultDomains {
			c.domains = append(c.domains, weightedDomain{name: d, weight: 1})
		}
	}
	if c.concurrency < 1 {
		return nil, fmt.Errorf("--concurrency must be at least 1")
	}
	if c.duration <= 0 {
		return nil, fmt.Errorf("--duration must be positive")
	}
	if c.timeout <= 0 {
		return nil, fmt.Errorf("--timeout must be positive")
	}
	for _, h := range c.headers {
		name, _, ok := strings.Cut(h, ":")
		if !ok || name == "" || strings.ContainsAny(name, " \t\r\n") || strings.ContainsAny(h, "\r\n") {
			return nil, fmt.Errorf("--header %q: want \"Name: value\" on one line", h)
		}
	}
	if c.bodyFile != "" {
		if _, err := os.Stat(c.bodyFile); err != nil {
			return nil, fmt.Errorf("--body-file: %w", err)
		}
	}
	return c, nil
}
