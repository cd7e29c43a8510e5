package queue

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/logrecord"
	"github.com/kumogo/kumogo/internal/message"
	"github.com/kumogo/kumogo/internal/smtpreply"
)

// resumingRoute is a siteRoute that resumes on delivery (as custom_lua's).
type resumingRoute struct{ siteRoute }

func (resumingRoute) ResumesOnDelivery() bool { return true }

type resumeRouter struct{ resumes bool }

func (r resumeRouter) Route(ctx context.Context, rd string, p *config.QueueProtocol) (Route, error) {
	if r.resumes {
		return resumingRoute{siteRoute("lua:" + rd)}, nil
	}
	return siteRoute("mx." + rd), nil
}

// TestResumeAfterOutage: 30 messages fail while their endpoint is down
// and wait a minute for their retry. On a resuming route the first
// delivery after the outage makes them all due at once, fed to a ready
// queue of max_ready 8 (one connection) without overfilling it (an overflowing message
// would wait up to a minute more); on an SMTP route they keep their
// retry times.
func TestResumeAfterOutage(t *testing.T) {
	for _, resumes := range []bool{true, false} {
		t.Run(fmt.Sprint("resumes=", resumes), func(t *testing.T) {
			var down atomic.Bool
			down.Store(true)
			h := &harness{spool: &memSpool{ids: map[string]bool{}}, log: &recLog{},
				conn: &fakeConnector{tries: map[string]int{}, script: func(string, int) smtpreply.Response {
					if down.Load() {
						return smtpreply.Response{Code: 400, Content: "connection refused"}
					}
					time.Sleep(5 * time.Millisecond) // a ready queue of max_ready fills meanwhile
					return smtpreply.Response{Code: 200, Content: "ok"}
				}},
				pol: &fakePolicy{cfg: config.DefaultQueueConfig(), path: config.DefaultEgressPath()}, gen: message.NewIDGenerator()}
			h.pol.cfg.RetryInterval = time.Minute
			h.pol.path.MaxReady = 8
			h.pol.path.ConnectionLimit = 1
			h.pol.path.IdleTimeout = 100 * time.Millisecond
			m, err := New(Options{Policy: h.pol, Spool: h.spool, Logger: h.log, Router: resumeRouter{resumes}, Connector: h.conn, Log: zerolog.Nop()})
			if err != nil {
				t.Fatal(err)
			}
			m.Start()
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				m.Shutdown(ctx)
			})
			h.m = m
			const n = 30
			for i := range n {
				// one at a time: a full ready queue would send them back
				h.inject(t, fmt.Sprint("u", i))
				waitFor(t, "the failure", 5*time.Second, func() bool { return h.log.Count(logrecord.TransientFailure) == i+1 })
			}
			down.Store(false)
			h.inject(t, "after")
			if resumes {
				waitFor(t, "every delivery", 3*time.Second, func() bool { return h.log.Count(logrecord.Delivery) == n+1 })
				if h.log.Count(logrecord.TransientFailure) != n {
					t.Fatalf("%d transient failures", h.log.Count(logrecord.TransientFailure))
				}
				return
			}
			waitFor(t, "the new message", 3*time.Second, func() bool { return h.log.Count(logrecord.Delivery) == 1 })
			time.Sleep(300 * time.Millisecond)
			if c := h.log.Count(logrecord.Delivery); c != 1 {
				t.Fatalf("%d deliveries on an SMTP route: its retries must keep their times", c)
			}
		})
	}
}
