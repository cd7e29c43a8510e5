package queue

import (
	"errors"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/kumogo/kumogo/internal/config"
)

type proxyDown struct{}

func (proxyDown) Error() string             { return "proxy down" }
func (proxyDown) SourceFailureKind() string { return kindProxyUnhealthy }

// TestSourceHealthThreshold: a Threshold rule suspends the source on its
// Nth failure within the period, once (re-triggering while suspended is no
// new suspension), other errors and kinds without a rule count nothing,
// and the suspension ends by itself after its duration.
func TestSourceHealthThreshold(t *testing.T) {
	type event struct {
		source, reason string
		on             bool
	}
	events := make(chan event, 10)
	var failures []string
	m := &Manager{log: zerolog.Nop(), ready: map[string]*readyQueue{}, o: Options{
		SourceConnectionFailed: func(source, kind string) { failures = append(failures, source+"/"+kind) },
		SourceSuspended:        func(source, reason string, on bool) { events <- event{source, reason, on} },
	}}
	src := &config.EgressSource{Name: "s", SuspendWhenProxyUnhealthy: map[string]any{
		"trigger": map[string]any{"Threshold": "3/min"}, "duration": "1s"}}
	down := errors.Join(errors.New("connect failed"), proxyDown{})
	m.sourceConnectFailed(src, errors.New("550 no"))
	m.sourceConnectFailed(src, down)
	m.sourceConnectFailed(src, down)
	if _, ok := m.health.suspendedUntil("s", time.Now()); ok {
		t.Fatal("suspended after 2 of 3 failures")
	}
	start := time.Now()
	m.sourceConnectFailed(src, down)
	until, ok := m.health.suspendedUntil("s", time.Now())
	if !ok || until.Sub(start) < 900*time.Millisecond || until.Sub(start) > 1100*time.Millisecond {
		t.Fatalf("after the 3rd failure: suspended %v until %v (+%v)", ok, until, until.Sub(start))
	}
	for range 3 {
		m.sourceConnectFailed(src, down) // fires again while suspended
	}
	if len(failures) != 6 || failures[0] != "s/ProxyUnhealthy" {
		t.Errorf("failures counted: %q", failures)
	}
	if e := <-events; e != (event{"s", kindProxyUnhealthy, true}) {
		t.Fatalf("event %+v", e)
	}
	select {
	case e := <-events:
		if e != (event{"s", kindProxyUnhealthy, false}) {
			t.Fatalf("event %+v, want the end of the suspension", e)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the suspension did not end")
	}
	if _, ok := m.health.suspendedUntil("s", time.Now()); ok || m.health.active.Load() != 0 {
		t.Fatalf("still suspended (active %d)", m.health.active.Load())
	}
	// no rule for the kind: counted, never suspended
	m.sourceConnectFailed(&config.EgressSource{Name: "n"}, down)
	if _, ok := m.health.suspendedUntil("n", time.Now()); ok {
		t.Fatal("a source without a rule was suspended")
	}
}
