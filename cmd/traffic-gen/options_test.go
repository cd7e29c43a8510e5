package main

import (
	"bytes"
	"context"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestDefaults(t *testing.T) {
	c, err := parseArgs(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.target != "127.0.0.1:2025" || c.concurrency != runtime.NumCPU()*10 || c.duration != 60*time.Second ||
		c.messageCount != 0 || c.starttls || c.bodyFile != "" || c.bodySize != 1024 ||
		c.domainSuffix != "mx-sink.wezfurlong.org" || c.throttle != nil || len(c.headers) != 0 ||
		c.keepGoing || c.bdat || c.json || c.http || c.httpBatchSize != 1 || c.timeout != 60*time.Second {
		t.Errorf("defaults: %+v", c)
	}
	var names []string
	for _, d := range c.domains {
		if d.weight != 1 {
			t.Errorf("default weight %d", d.weight)
		}
		names = append(names, d.name)
	}
	if strings.Join(names, ",") != "aol.com,gmail.com,hotmail.com,yahoo.com" {
		t.Errorf("default domains %v", names)
	}
}

func TestOptions(t *testing.T) {
	c, err := parseArgs([]string{
		"--target", "127.0.0.1:2525", "--concurrency", "7", "--duration", "90s", "--message-count", "12",
		"--starttls", "--body-size", "60kb", "--domain", "Example.COM:5", "--domain", "b.test",
		"--domain-suffix", "", "--throttle", "1,000/hour", "--header", "X-A: 1", "--header", "X-B: 2",
		"--keep-going", "--bdat", "--json", "--timeout", "2.5",
	}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.target != "127.0.0.1:2525" || c.concurrency != 7 || c.duration != 90*time.Second || c.messageCount != 12 ||
		!c.starttls || c.bodySize != 60000 || c.domainSuffix != "" || c.throttle.Limit != 1000 ||
		c.throttle.Period != time.Hour || len(c.headers) != 2 || !c.keepGoing || !c.bdat || !c.json ||
		c.timeout != 2500*time.Millisecond {
		t.Errorf("parsed: %+v", c)
	}
	if len(c.domains) != 2 || c.domains[0] != (weightedDomain{"example.com", 5}) || c.domains[1] != (weightedDomain{"b.test", 1}) {
		t.Errorf("domains %+v", c.domains)
	}
	c, err = parseArgs([]string{"--domain-suffix", "''", "--duration", "5"}, io.Discard)
	if err != nil || c.domainSuffix != "" || c.duration != 5*time.Second {
		t.Errorf("literal '': %+v %v", c, err)
	}
}

func TestOptionErrors(t *testing.T) {
	cases := map[string][]string{
		"weight":        {"--domain", "a.test:0"},
		"weight ":       {"--domain", "a.test:x"},
		"size":          {"--body-size", "12parsecs"},
		"throttle spec": {"--throttle", "fast"},
		"Name: value":   {"--header", "no colon here"},
		"concurrency":   {"--concurrency", "0"},
		"duration":      {"--duration", "-3"},
		"body-file":     {"--body-file", "/nonexistent/file"},
		"unexpected":    {"stray"},
	}
	for want, args := range cases {
		var stderr bytes.Buffer
		code := run(context.Background(), args, io.Discard, &stderr)
		if code != 2 || !strings.Contains(stderr.String(), strings.TrimSpace(want)) {
			t.Errorf("%v: exit %d, stderr %q", args, code, stderr.String())
		}
	}
}

func TestHTTPTarget(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--http"}, "http://127.0.0.1:8000"},
		{[]string{"--http", "--target", "127.0.0.1:9000"}, "http://127.0.0.1:9000"},
		{[]string{"--http", "--target", "https://mta.example:8443"}, "https://mta.example:8443"},
	} {
		cfg, err := parseArgs(c.args, io.Discard)
		if err != nil || cfg.target != c.want || !cfg.http {
			t.Errorf("%v: %v %+v", c.args, err, cfg)
		}
	}
	if _, err := parseArgs([]string{"--http", "--http-batch-size", "0"}, io.Discard); err == nil {
		t.Error("--http-batch-size 0 accepted")
	}
}

func TestParseSize(t *testing.T) {
	cases := map[string]int{
		"100000": 100000, "1024": 1024, "60kb": 60000, "60KB": 60000, "60k": 60000, "1.5mb": 1500000,
		"64KiB": 65536, "1MiB": 1 << 20, "2 kb": 2000, "0": 0, "10b": 10,
	}
	for in, want := range cases {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "kb", "1.2.3kb", "5 parsecs", "9999gb"} {
		if _, err := parseSize(bad); err == nil {
			t.Errorf("parseSize(%q): no error", bad)
		}
	}
}

func TestLoremBody(t *testing.T) {
	for _, size := range []int{0, 1, 100, 1024, 100_000} {
		b := loremBody(size)
		if len(b) < size || len(b) > size+wrapCols+2 {
			t.Errorf("size %d: %d bytes", size, len(b))
		}
		if size > 0 {
			checkLorem(t, b)
		}
		if !bytes.Equal(b, loremBody(size)) {
			t.Errorf("size %d: not deterministic", size)
		}
	}
}

func TestDotStuffAndCRLF(t *testing.T) {
	if got := string(canonicalCRLF([]byte("a\nb\r\nc\rd"))); got != "a\r\nb\r\nc\r\nd\r\n" {
		t.Errorf("canonicalCRLF: %q", got)
	}
	if got := string(dotStuff([]byte(".a\r\nb.\r\n..c\r\n"))); got != "..a\r\nb.\r\n...c\r\n" {
		t.Errorf("dotStuff: %q", got)
	}
	in := []byte("no dots\r\n")
	if out := dotStuff(in); &out[0] != &in[0] {
		t.Errorf("dotStuff copied a body without leading dots")
	}
}

func TestHistogram(t *testing.T) {
	h := newHistogram()
	for i := 1; i <= 10000; i++ {
		h.record(time.Duration(i) * time.Microsecond)
	}
	s := h.summary()
	within := func(name string, got, want time.Duration) {
		if d := got - want; d < -want/50 || d > want/50 {
			t.Errorf("%s = %v, want about %v", name, got, want)
		}
	}
	if s.Min != time.Microsecond || s.Max != 10*time.Millisecond || s.Count != 10000 {
		t.Errorf("summary %+v", s)
	}
	within("avg", s.Avg, 5000500*time.Nanosecond)
	within("p50", s.P50, 5*time.Millisecond)
	within("p90", s.P90, 9*time.Millisecond)
	within("p99", s.P99, 9900*time.Microsecond)
	within("p99.9", s.P999, 9990*time.Microsecond)
	for v := uint64(0); v < 1<<40; v = v*3/2 + 1 {
		i := bucketOf(v)
		if m := bucketMid(i); bucketOf(m) != i {
			t.Fatalf("bucket %d of %d has midpoint %d in bucket %d", i, v, m, bucketOf(m))
		}
	}
	if (newHistogram().summary() != latencySummary{}) {
		t.Errorf("empty histogram summary not zero")
	}
}

func TestRateText(t *testing.T) {
	if got := rateText(1234.4); got != "1,234 msgs/s, 74,064 msgs/minute, 4,443,840 msgs/hour" {
		t.Errorf("rateText: %q", got)
	}
	if groupThousands(999) != "999" || groupThousands(1000) != "1,000" || groupThousands(1234567) != "1,234,567" {
		t.Errorf("groupThousands")
	}
}
