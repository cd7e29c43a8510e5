package queue

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/logrecord"
	"github.com/kumogo/kumogo/internal/message"
)

// goroutineID is the number runtime.Stack gives the calling goroutine.
func goroutineID() string {
	buf := make([]byte, 64)
	buf = buf[:runtime.Stack(buf, false)]
	f := bytes.Fields(buf)
	if len(f) < 2 {
		return ""
	}
	return string(f[1])
}

// gateRouter records on which goroutine each destination is looked up and
// holds the lookups of the domains in hold until release closes.
type gateRouter struct {
	mu      sync.Mutex
	on      map[string]bool // goroutine ids
	hold    map[string]bool
	release chan struct{}
}

func (r *gateRouter) Route(ctx context.Context, rd string, p *config.QueueProtocol) (Route, error) {
	r.mu.Lock()
	r.on[goroutineID()] = true
	held := r.hold[rd]
	r.mu.Unlock()
	if held {
		select {
		case <-r.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return siteRoute("mx." + rd), nil
}

func (r *gateRouter) goroutines() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.on)
}

// New destinations are looked up (and their get_egress_path_config run)
// on reused worker goroutines, whose stacks have grown already; a lookup
// that hangs does not hold up the others; Shutdown leaves no worker.
func TestDestinationLookupsReuseWorkers(t *testing.T) {
	router := &gateRouter{on: map[string]bool{}, hold: map[string]bool{"stuck.example": true}, release: make(chan struct{})}
	spool, log := &memSpool{ids: map[string]bool{}}, &recLog{}
	pol := &fakePolicy{cfg: config.DefaultQueueConfig(), path: config.DefaultEgressPath()}
	pol.path.IdleTimeout = 10 * time.Millisecond
	m, err := New(Options{Policy: pol, Spool: spool, Logger: log, Router: router,
		Connector: &fakeConnector{tries: map[string]int{}, script: ok250}, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	m.Start()
	gen := message.NewIDGenerator()
	send := func(domain string) {
		t.Helper()
		msg := message.New(gen, message.Address{User: "s", Domain: "x.com"}, []message.Address{{User: "u", Domain: domain}}, []byte("Subject: t\r\n\r\nbody\r\n"))
		ctx := context.Background()
		if err := m.Spool(ctx, msg, false); err != nil {
			t.Fatal(err)
		}
		if err := m.Insert(ctx, msg); err != nil {
			t.Fatal(err)
		}
	}
	send("stuck.example")
	waitFor(t, "the stuck lookup to start", 5*time.Second, func() bool { return router.goroutines() == 1 })
	const n = 30
	for i := range n {
		send(fmt.Sprintf("d%d.example", i))
		waitFor(t, "a delivery", 5*time.Second, func() bool { return log.Count(logrecord.Delivery) == i+1 })
	}
	// one goroutine holds the stuck lookup; the 30 others, one after the
	// other, needed one more (two when a worker is still finishing its
	// promotion as the next lookup starts)
	if g := router.goroutines(); g > 3 {
		t.Fatalf("%d destination lookups ran on %d goroutines: workers are not reused", n+1, g)
	}
	close(router.release)
	waitFor(t, "the stuck destination's delivery", 5*time.Second, func() bool { return log.Count(logrecord.Delivery) == n+1 })

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	if stacks := string(buf[:runtime.Stack(buf, true)]); strings.Contains(stacks, "queue.(*Manager).worker") {
		t.Fatalf("a worker still runs after Shutdown:\n%s", stacks)
	}
}
