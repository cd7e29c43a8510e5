package egress

import (
	"context"
	"errors"
	"fmt"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/message"
	"github.com/kumogo/kumogo/internal/smtpreply"
	"github.com/kumogo/kumogo/queue"
	"github.com/kumogo/kumogo/queue/egress/mx"
)

// This file is egress's side of the scheduler's interfaces (queue/interfaces.go):
// Router resolves a routing domain into a connection plan, Connector opens
// sessions for it. cmd/kumogo only builds them.

// Router implements queue.Router with the MX resolver.
type Router struct {
	Resolver *mx.Resolver
	// STS gives the MTA-STS policies applied during resolution
	// (mtasts.go); nil when kumo.dns.set_mta_sts_enabled(false).
	STS PolicySource
}

// route is a resolved connection plan; its site names the ready queue.
type route struct{ plan *mx.ConnectionPlan }

func (r route) Site() string { return r.plan.Site }

// Route resolves routingDomain (or the queue's mx_list). A null MX (a
// Bounce) or a domain without a usable address (a TransientFailure) is a
// *smtpreply.Error carrying the response to record; other failures (DNS
// errors) are returned as they are and retried by the scheduler.
func (r Router) Route(ctx context.Context, routingDomain string, proto *config.QueueProtocol) (queue.Route, error) {
	if kind := proto.Kind(); kind != "smtp" {
		return nil, fmt.Errorf("queue protocol %s is not supported yet", kind)
	}
	plan, err := r.Resolver.Plan(ctx, routingDomain, proto.MXList, 0, "")
	if err != nil {
		return nil, wrapFailure(err)
	}
	plan.TreatListAsSecure = len(proto.MXList) > 0 && proto.TreatMXListAsSecure
	if r.STS != nil && len(proto.MXList) == 0 {
		if plan, err = resolveSTS(ctx, r.STS, plan); err != nil {
			return nil, wrapFailure(err)
		}
	}
	return route{plan: plan}, nil
}

// wrapFailure turns an *mx.Failure into the *smtpreply.Error carrying
// its response; other errors (DNS failures, an MTA-STS policy that
// permits no host) are returned as they are and recorded by the queue as
// "451 4.4.4 failed to resolve queue ...".
func wrapFailure(err error) error {
	var f *mx.Failure
	if errors.As(err, &f) {
		return &smtpreply.Error{Response: ResponseFor(err), Err: err}
	}
	return err
}

// Connector implements queue.Connector with a Dialer: the port and EHLO
// name follow Dial's rules (the egress source's, then the path's, then
// the Dialer's).
type Connector struct {
	Dialer Dialer
}

// Connect opens a session to the first candidate of r that answers. Every
// failure is a *smtpreply.Error carrying the response to record
// (ResponseFor).
func (c *Connector) Connect(ctx context.Context, r queue.Route, p *config.EgressPath, src *config.EgressSource) (queue.Conn, error) {
	rt, ok := r.(route)
	if !ok {
		return nil, fmt.Errorf("egress: route %T was not made by egress.Router", r)
	}
	s, err := c.Dialer.Connect(ctx, rt.plan, p, src, "")
	if err != nil {
		return nil, &smtpreply.Error{Response: ResponseFor(err), Err: err}
	}
	return &conn{s: s}, nil
}

// conn implements queue.Conn with a Session.
type conn struct{ s *Session }

// Send delivers msg in one transaction and returns one response per
// recipient; the error is only returned when there is no response to
// record.
func (c *conn) Send(ctx context.Context, msg *message.Message) ([]queue.RcptResponse, error) {
	rcpts := msg.Recipients()
	res, err := c.s.Send(ctx, Envelope{Sender: msg.Sender(), Recipients: rcpts}, msg.Data())
	out := make([]queue.RcptResponse, 0, len(res.Responses))
	for i, r := range res.Responses {
		if i >= len(rcpts) {
			break
		}
		out = append(out, queue.RcptResponse{Recipient: rcpts[i], Response: r})
	}
	if len(out) > 0 {
		return out, nil
	}
	return nil, err
}

func (c *conn) Usable() bool { return c.s.Usable() }
func (c *conn) Close()       { c.s.Close() }

// Info describes the session for log records.
// source_address.address is "ip:port", as in KumoMTA's records.
func (c *conn) Info() queue.ConnInfo {
	info := queue.ConnInfo{
		PeerName:   c.s.PeerName(),
		PeerAddr:   c.s.PeerAddr(),
		SourceAddr: c.s.LocalAddr().String(),
		TLSCipher:  c.s.TLSCipher(),
		TLSVersion: c.s.TLSVersion(),
		SessionID:  c.s.ID(),
	}
	if server, proto := c.s.Proxy(); proto != "" {
		info.ProxyServer, info.ProxyProtocol = server.String(), proto
	}
	return info
}
