package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sort"
	"time"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/message"
	"github.com/kumogo/kumogo/internal/metrics"
	"github.com/kumogo/kumogo/queue"
	"github.com/kumogo/kumogo/queue/egress"
	"github.com/kumogo/kumogo/queue/egress/mx"
	"github.com/kumogo/kumogo/runtime"
)

// route is a resolved connection plan; its site names the ready queue.
type route struct{ plan *mx.ConnectionPlan }

func (r route) Site() string { return r.plan.Site }

// router adapts the MX resolver to queue.Router.
type router struct{ res *mx.Resolver }

func (r router) Route(ctx context.Context, routingDomain string, proto *config.QueueProtocol) (queue.Route, error) {
	if kind := proto.Kind(); kind != "smtp" {
		return nil, fmt.Errorf("queue protocol %s is not supported yet", kind)
	}
	plan, err := r.res.Plan(ctx, routingDomain, proto.MXList, 0, "")
	if err != nil {
		var f *mx.Failure
		if errors.As(err, &f) {
			// null MX (a bounce) or no usable address (a transient failure)
			return nil, &queue.ResponseError{Response: queue.Response(egress.ResponseFor(err))}
		}
		return nil, err
	}
	return route{plan: plan}, nil
}

// connector adapts the egress SMTP client to queue.Connector.
type connector struct {
	dialer   egress.Dialer
	hostname string
}

func (c *connector) Connect(ctx context.Context, r queue.Route, p *config.EgressPath, src *config.EgressSource) (queue.Conn, error) {
	plan := *r.(route).plan
	cands := make([]mx.Candidate, len(plan.Candidates))
	copy(cands, plan.Candidates)
	for i := range cands {
		if cands[i].Port == 0 {
			cands[i].Port = p.SMTPPort
		}
	}
	plan.Candidates = cands
	ehlo := p.EhloDomain
	if ehlo == "" {
		ehlo = src.EhloDomain
	}
	if ehlo == "" {
		ehlo = c.hostname
	}
	s, err := c.dialer.Connect(ctx, &plan, p, src, ehlo)
	if err != nil {
		return nil, &queue.ResponseError{Response: queue.Response(egress.ResponseFor(err))}
	}
	return &outConn{s: s}, nil
}

// outConn adapts an egress session to queue.Conn.
type outConn struct{ s *egress.Session }

func (o *outConn) Send(ctx context.Context, msg *message.Message) ([]queue.RcptResponse, error) {
	rcpts := msg.Recipients()
	res, err := o.s.Send(ctx, egress.Envelope{Sender: msg.Sender(), Recipients: rcpts}, msg.Data())
	out := make([]queue.RcptResponse, 0, len(res.Responses))
	for i, r := range res.Responses {
		if i >= len(rcpts) {
			break
		}
		out = append(out, queue.RcptResponse{Recipient: rcpts[i], Response: queue.Response(r)})
	}
	if len(out) > 0 {
		return out, nil
	}
	return nil, err
}

func (o *outConn) Usable() bool { return o.s.Usable() }
func (o *outConn) Close()       { o.s.Close() }
func (o *outConn) Info() queue.ConnInfo {
	return queue.ConnInfo{
		PeerName:   o.s.PeerName(),
		PeerAddr:   o.s.PeerAddr(),
		SourceAddr: o.s.LocalAddr().Addr().String(),
		TLSCipher:  o.s.TLSCipher(),
		TLSVersion: o.s.TLSVersion(),
		SessionID:  o.s.ID(),
	}
}

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

func (a dnsAdapter) LookupMX(ctx context.Context, domain string) (map[string]any, error) {
	res, err := a.resolver().LookupMX(ctx, domain)
	if err != nil {
		return nil, err
	}
	byPref := map[string]any{}
	prefs := res.Prefs()
	for _, p := range prefs {
		hosts := make([]any, 0, len(res.ByPref[p]))
		for _, h := range res.ByPref[p] {
			hosts = append(hosts, h)
		}
		byPref[fmt.Sprint(p)] = hosts
	}
	hosts := make([]any, len(res.Hosts))
	for i, h := range res.Hosts {
		hosts[i] = h
	}
	return map[string]any{
		"domain_name":       res.DomainName,
		"hosts":             hosts,
		"by_pref":           byPref,
		"site_name":         res.SiteName,
		"is_domain_literal": res.IsDomainLiteral,
		"is_secure":         false,
		"is_mx":             !res.IsImplicit && !res.IsDomainLiteral,
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
	hostname := d.hostname
	if hostname == "" {
		hostname, _ = os.Hostname()
	}
	opts := queue.Options{
		Policy:    d.rt,
		Spool:     sp,
		Logger:    &d.loggers,
		Router:    protoRouter{smtp: router{res: d.resolver()}},
		Connector: protoConnector{smtp: &connector{hostname: hostname}, rt: d.rt, hostname: hostname},
		Log:       d.log,
		NodeID:    d.nodeID,
		Limits:    d.limits,
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
		if d.rt.HasHandler("spool_message_enumerated") {
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
