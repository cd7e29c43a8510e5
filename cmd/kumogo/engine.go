package main

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"time"

	"github.com/kumogo/kumogo/internal/event"
	"github.com/kumogo/kumogo/internal/message"
	"github.com/kumogo/kumogo/internal/metrics"
	"github.com/kumogo/kumogo/queue"
	"github.com/kumogo/kumogo/queue/egress"
	"github.com/kumogo/kumogo/queue/egress/mx"
	"github.com/kumogo/kumogo/runtime"
)

// dnsAdapter serves kumo.dns.* from the MX resolver, or from its own
// resolver for kumo.dns.define_resolver.
type dnsAdapter struct {
	d     *daemon
	fixed *mx.Resolver
}

func (a dnsAdapter) resolver() *mx.Resolver {
	if a.fixed != nil {
		return a.fixed
	}
	return a.d.resolver()
}

// NewResolver is a named resolver for kumo.dns.define_resolver.
func (a dnsAdapter) NewResolver(servers []string) (runtime.DNS, error) {
	res, err := mx.NewResolver(servers, mx.Options{})
	if err != nil {
		return nil, err
	}
	return dnsAdapter{d: a.d, fixed: res}, nil
}

func (a dnsAdapter) LookupMX(ctx context.Context, domain string) (*runtime.MXAnswer, error) {
	res, err := a.resolver().LookupMX(ctx, domain)
	if err != nil {
		return nil, err
	}
	return &runtime.MXAnswer{
		DomainName:      res.DomainName,
		Hosts:           res.Hosts,
		ByPref:          res.ByPref,
		SiteName:        res.SiteName,
		IsDomainLiteral: res.IsDomainLiteral,
		IsSecure:        res.IsSecure,
		IsMX:            !res.IsImplicit && !res.IsDomainLiteral,
	}, nil
}

func (a dnsAdapter) LookupAddr(ctx context.Context, name string) ([]string, error) {
	addrs, err := a.resolver().LookupAddr(ctx, name, "")
	if err != nil {
		return nil, err
	}
	out := make([]string, len(addrs))
	for i, ip := range addrs {
		out[i] = ip.String()
	}
	sort.Strings(out)
	return out, nil
}

func (a dnsAdapter) LookupPTR(ctx context.Context, ip netip.Addr) ([]string, error) {
	return a.resolver().LookupPTR(ctx, ip)
}

func (a dnsAdapter) LookupTXT(ctx context.Context, name string) ([]string, error) {
	return a.resolver().LookupTXT(ctx, name)
}

func (a dnsAdapter) Configure(servers []string) error {
	res, err := mx.NewResolver(servers, mx.Options{})
	if err != nil {
		return err
	}
	a.d.mu.Lock()
	a.d.res = res
	a.d.mu.Unlock()
	return nil
}

// resolver returns the configured resolver, or one from /etc/resolv.conf.
func (d *daemon) resolver() *mx.Resolver {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.res == nil {
		res, err := mx.FromResolvConf("/etc/resolv.conf", mx.Options{})
		if err != nil {
			d.log.Warn().Err(err).Msg("reading /etc/resolv.conf; using 127.0.0.1:53")
			res, _ = mx.NewResolver([]string{"127.0.0.1:53"}, mx.Options{})
		}
		d.res = res
	}
	return d.res
}

// startEngine opens the spools, builds the queue manager, enumerates the
// spool into it and starts delivery. It runs after init.
func (d *daemon) startEngine(ctx context.Context) error {
	sp, err := openSpools(d)
	if err != nil {
		return err
	}
	d.spool = sp
	opts := queue.Options{
		Policy:    d.rt,
		Spool:     sp,
		Logger:    &d.loggers,
		Router:    protoRouter{smtp: egress.Router{Resolver: d.resolver()}},
		Connector: protoConnector{smtp: &egress.Connector{Dialer: egress.Dialer{Hostname: d.hostname, STS: d.mtaSTS(), TLSA: daneDNS{d}}}, rt: d.rt, hostname: d.hostname},
		Log:       d.log,
		NodeID:    d.nodeID,
		// admin bounces and suspensions survive restarts (admin.go)
		AdminStatePath: d.adminStatePath(),
	}
	if d.classifier != nil {
		opts.Classifier = d.classifier
	}
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
	n := 0
	corrupt, err := sp.Enumerate(ctx, func(msg *message.Message) error {
		if d.rt.HasHandler(event.SpoolMessageEnumerated) {
			if err := d.rt.SpoolMessageEnumerated(ctx, msg); err != nil {
				return fmt.Errorf("spool_message_enumerated: %w", err)
			}
		}
		if err := m.Restore(ctx, msg); err != nil {
			d.log.Warn().Err(err).Str("id", msg.ID()).Msg("spooled message left on disk until the next start")
			return nil
		}
		n++
		return nil
	})
	if err != nil {
		return fmt.Errorf("enumerating the spool: %w", err)
	}
	if n > 0 || corrupt > 0 {
		d.log.Info().Int("messages", n).Int("corrupt", corrupt).Dur("took", time.Since(start)).Msg("spool enumerated")
	}
	return nil
}
