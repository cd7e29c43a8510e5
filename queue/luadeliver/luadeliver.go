// Package luadeliver delivers messages through the custom_lua protocol
// (KumoMTA's make_queue_config protocol page): a policy event builds a
// connection object whose send (or send_batch) method delivers. This
// package turns such a session into a queue connection and classifies its
// results as KumoMTA does: a returned string is a delivery (code 200, the
// string as the response text), kumo.reject with a 4xx code is a
// transient failure and with a 5xx code a bounce, and any other Lua error
// closes the session and retries the messages.
package luadeliver

import (
	"context"
	"errors"
	"time"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/message"
	"github.com/kumogo/kumogo/internal/smtpreply"
	"github.com/kumogo/kumogo/queue"
)

// Session is one custom_lua session (implemented by
// runtime.LuaConnection).
type Session interface {
	Send(ctx context.Context, msg *message.Message) (string, error)
	SendBatch(ctx context.Context, msgs []*message.Message) ([]string, []error, error)
	Usable() bool
	Close(ctx context.Context) error
}

// Opener runs the constructor event for a representative domain, tenant
// and campaign (implemented by runtime.Runtime.OpenLuaConnection through
// an adapter).
type Opener func(ctx context.Context, constructor, domain string, tenant, campaign *string) (Session, error)

// Route is the destination of a custom_lua queue: its ready queue is
// named after the constructor ("lua:<constructor>").
type Route struct {
	Constructor     string
	Size            int // batch_size
	MinBatchSize    int
	MaxBatchLatency time.Duration
}

// NewRoute describes the custom_lua protocol of a queue config.
func NewRoute(p *config.QueueProtocol) *Route {
	return &Route{Constructor: p.CustomLuaConstructor, Size: p.BatchSize, MinBatchSize: p.MinBatchSize, MaxBatchLatency: p.MaxBatchLatency}
}

// BatchSize is the queue's batch_size (queue.BatchRoute).
func (r *Route) BatchSize() int { return r.Size }

// ResumesOnDelivery: the waiting messages of a custom_lua queue resume as
// soon as a delivery succeeds again (queue.ResumingRoute): its failures
// mean that the operator's endpoint (a webhook, a broker) is down, not
// that a remote site asks for time.
func (r *Route) ResumesOnDelivery() bool { return true }

// Site names the ready queue.
func (r *Route) Site() string { return "lua:" + r.Constructor }

// Conn is a queue connection over a Lua session. The session is opened on
// the first send, with the domain, tenant and campaign of that message's
// queue as the constructor's arguments (one representative of the
// scheduled queues feeding the ready queue, as in KumoMTA).
type Conn struct {
	open   Opener
	route  *Route
	s      Session
	broken bool
}

var (
	_ queue.BatchConn     = (*Conn)(nil)
	_ queue.BatchRoute    = (*Route)(nil)
	_ queue.ResumingRoute = (*Route)(nil)
)

// New returns a connection for route; nothing runs until the first send.
func New(open Opener, route *Route) *Conn { return &Conn{open: open, route: route} }

// session opens the Lua session for msg's queue when none is open.
func (c *Conn) session(ctx context.Context, msg *message.Message) error {
	if c.s != nil {
		return nil
	}
	p := message.ParseQueueName(msg.QueueName())
	var tenant, campaign *string
	if p.HasTenant {
		tenant = &p.Tenant
	}
	if p.HasCampaign {
		campaign = &p.Campaign
	}
	s, err := c.open(ctx, c.route.Constructor, p.Domain, tenant, campaign)
	if err != nil {
		c.broken = true
		return err
	}
	c.s = s
	return nil
}

// Send delivers msg with conn:send(msg).
func (c *Conn) Send(ctx context.Context, msg *message.Message) ([]queue.RcptResponse, error) {
	if err := c.session(ctx, msg); err != nil {
		return nil, err
	}
	d, err := c.s.Send(ctx, msg)
	resp, err := c.result(d, err)
	if err != nil {
		return nil, err
	}
	return perRecipient(msg, resp), nil
}

// result classifies one send outcome; a non-nil error is a failed
// session.
func (c *Conn) result(disposition string, err error) (smtpreply.Response, error) {
	if err == nil {
		return smtpreply.Response{Code: 200, Content: disposition}, nil
	}
	var rej *smtpreply.Rejection
	if errors.As(err, &rej) {
		if rej.Closes() {
			c.broken = true
		}
		return rejectionResponse(rej), nil
	}
	c.broken = true
	return smtpreply.Response{}, err
}

// rejectionResponse is the response of a kumo.reject: its code and text
// (an enhanced status code at the start of the text is kept as such).
func rejectionResponse(rej *smtpreply.Rejection) smtpreply.Response {
	resp := smtpreply.Response{Code: rej.Code, Content: rej.Text}
	if class, subject, detail, rest, ok := smtpreply.SplitEnhanced(rej.Text); ok {
		resp.Enhanced = &smtpreply.EnhancedCode{Class: class, Subject: subject, Detail: detail}
		resp.Content = rest
	}
	return resp
}

func perRecipient(msg *message.Message, resp smtpreply.Response) []queue.RcptResponse {
	rcpts := msg.Recipients()
	out := make([]queue.RcptResponse, len(rcpts))
	for i, r := range rcpts {
		out[i] = queue.RcptResponse{Recipient: r, Response: resp}
	}
	return out
}

// Batching returns the queue's batch_size, min_batch_size and
// max_batch_latency.
func (c *Conn) Batching() (int, int, time.Duration) {
	return c.route.Size, c.route.MinBatchSize, c.route.MaxBatchLatency
}

// SendBatch delivers msgs with conn:send_batch(msgs).
func (c *Conn) SendBatch(ctx context.Context, msgs []*message.Message) ([][]queue.RcptResponse, error) {
	if len(msgs) == 0 {
		return nil, nil
	}
	if err := c.session(ctx, msgs[0]); err != nil {
		return nil, err
	}
	ds, errs, err := c.s.SendBatch(ctx, msgs)
	if err != nil {
		var rej *smtpreply.Rejection
		if !errors.As(err, &rej) {
			c.broken = true
			return nil, err
		}
		// kumo.reject raised by send_batch applies to every message
		errs = make([]error, len(msgs))
		ds = make([]string, len(msgs))
		for i := range errs {
			errs[i] = rej
		}
	}
	out := make([][]queue.RcptResponse, len(msgs))
	for i, m := range msgs {
		resp, err := c.result(ds[i], errs[i])
		if err != nil {
			return nil, err
		}
		out[i] = perRecipient(m, resp)
	}
	return out, nil
}

// Usable reports whether another message may use the session.
func (c *Conn) Usable() bool {
	return !c.broken && (c.s == nil || c.s.Usable())
}

// Info describes the session for records: KumoMTA's peer name
// "Lua via <constructor>" and delivery protocol Lua.
func (c *Conn) Info() queue.ConnInfo {
	return queue.ConnInfo{PeerName: "Lua via " + c.route.Constructor, DeliveryProtocol: "Lua"}
}

// Close ends the session, calling the object's close method.
func (c *Conn) Close() {
	if c.s != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = c.s.Close(ctx)
		c.s = nil
	}
}
