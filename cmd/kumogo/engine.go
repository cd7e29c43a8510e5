package main

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/kumogo/kumogo/internal/duration"
	"github.com/kumogo/kumogo/internal/event"
	"github.com/kumogo/kumogo/internal/message"
	"github.com/kumogo/kumogo/internal/metrics"
	"github.com/kumogo/kumogo/queue"
	"github.com/kumogo/kumogo/queue/egress"
	"github.com/kumogo/kumogo/queue/spool"
)

// startEngine opens the spools, builds the queue manager, enumerates the
// spool into it and starts delivery. It runs after init.
func (d *daemon) startEngine(ctx context.Context) error {
	sp, err := openSpools(d)
	if err != nil {
		return err
	}
	d.spool = sp
	dane := newDANEResults(d.metrics)
	dialer := egress.Dialer{Hostname: d.hostname, TLSA: daneDNS{d}, ProxyResolver: d.resolver(),
		DANEResult: func(result string) { dane.WithLabelValues(result).Inc() }}
	opts := queue.Options{
		Policy:    d.rt,
		Spool:     sp,
		Logger:    &d.loggers,
		Router:    protoRouter{smtp: egress.Router{Resolver: d.resolver(), STS: stsGate{d}}},
		Connector: protoConnector{smtp: &egress.Connector{Dialer: dialer}, rt: d.rt, hostname: d.hostname},
		Log:       d.log,
		NodeID:    d.nodeID,
		Limits:    d.limits,
		// admin bounces and suspensions survive restarts (admin.go)
		AdminStatePath: d.adminStatePath(),
		// a reaped ready queue's counters go with it
		ReadyQueueReaped: d.metrics.ForgetReadyQueue,
	}
	if v := os.Getenv("KUMOGO_READY_QUEUE_REAP_INTERVAL"); v != "" {
		// kumogo's own knob (KumoMTA fixes it at 10 minutes), for tests
		// and benchmarks that watch queues come and go
		iv, err := duration.Parse(v)
		if err != nil {
			return fmt.Errorf("KUMOGO_READY_QUEUE_REAP_INTERVAL: %w", err)
		}
		opts.ReadyQueueReapInterval = iv
	}
	if d.classifier != nil {
		opts.Classifier = d.classifier
	}
	sourceHealthMetrics(d.metrics, &opts)
	m, err := queue.New(opts)
	if err != nil {
		return err
	}
	d.queue = m
	d.metrics.SetQueueSource(func() metrics.QueueSizes {
		sched, ready := m.QueueSizes()
		return metrics.QueueSizes{Scheduled: sched, Ready: ready}
	})
	for _, l := range d.listeners {
		l.SetEnqueuer(m, d.health(sp.Health))
	}
	m.Start()
	d.loggers.startHooks(m)
	start := time.Now()
	var n atomic.Int64
	var corrupt int
	if d.rt.HasHandler(event.SpoolMessageEnumerated) {
		// the handler sees each whole message
		corrupt, err = sp.Enumerate(ctx, func(msg *message.Message) error {
			if err := d.rt.SpoolMessageEnumerated(ctx, msg); err != nil {
				return fmt.Errorf("spool_message_enumerated: %w", err)
			}
			if err := m.Restore(ctx, msg); err != nil {
				d.log.Warn().Err(err).Str("id", msg.ID()).Msg("spooled message left on disk until the next start")
				return nil
			}
			n.Add(1)
			return nil
		})
	} else {
		// Only the meta records are read, a few fields of each: the queue
		// reads a message when it is due (queue/compact.go), and delivery
		// of the due ones starts while the enumeration goes on.
		corrupt, err = sp.EnumerateWaiting(ctx, func(w spool.Waiting) error {
			if err := m.RestoreCompact(ctx, w.ID, w.Queue, w.Scheduling); err != nil {
				d.log.Warn().Err(err).Str("id", w.ID).Msg("spooled message left on disk until the next start")
				return nil
			}
			n.Add(1)
			return nil
		})
		if err == nil {
			// data without meta was never acknowledged: set aside in
			// the background, without holding up the start
			sctx, stop := context.WithCancel(context.WithoutCancel(ctx))
			d.stopSweeps = stop
			d.sweeps.Add(1)
			go func() {
				defer d.sweeps.Done()
				if k, err := sp.SweepOrphans(sctx); err != nil && sctx.Err() == nil {
					d.log.Warn().Err(err).Msg("looking for spooled data without meta")
				} else if k > 0 {
					d.log.Info().Int("orphans", k).Msg("spooled data without meta set aside")
				}
			}()
		}
	}
	if err != nil {
		return fmt.Errorf("enumerating the spool: %w", err)
	}
	if n.Load() > 0 || corrupt > 0 {
		took := time.Since(start)
		d.log.Info().Int64("messages", n.Load()).Int("corrupt", corrupt).Dur("took", took).
			Float64("per_second", float64(n.Load())/max(took.Seconds(), 1e-9)).Msg("spool enumerated")
	}
	return nil
}
