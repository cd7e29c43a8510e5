package main

import (
	"context"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/queue"
	"github.com/kumogo/kumogo/queue/luadeliver"
	"github.com/kumogo/kumogo/queue/maildir"
	"github.com/kumogo/kumogo/runtime"
)

// protoRouter resolves the maildir and custom_lua protocols of a queue
// config; SMTP queues go on to MX resolution.
type protoRouter struct{ smtp queue.Router }

func (r protoRouter) Route(ctx context.Context, routingDomain string, proto *config.QueueProtocol) (queue.Route, error) {
	switch proto.Kind() {
	case "maildir":
		return maildir.NewRoute(proto)
	case "custom_lua":
		return luadeliver.NewRoute(proto), nil
	}
	return r.smtp.Route(ctx, routingDomain, proto)
}

// protoConnector opens maildir writers and custom_lua sessions for their
// routes and SMTP connections for the others.
type protoConnector struct {
	smtp     queue.Connector
	rt       *runtime.Runtime
	hostname string
}

func (c protoConnector) Connect(ctx context.Context, r queue.Route, p *config.EgressPath, src *config.EgressSource) (queue.Conn, error) {
	switch route := r.(type) {
	case *maildir.Route:
		return maildir.New(route, c.hostname), nil
	case *luadeliver.Route:
		return luadeliver.New(c.openLua, route), nil
	}
	return c.smtp.Connect(ctx, r, p, src)
}

func (c protoConnector) openLua(ctx context.Context, constructor, domain string, tenant, campaign *string) (luadeliver.Session, error) {
	s, err := c.rt.OpenLuaConnection(ctx, constructor, domain, tenant, campaign)
	if err != nil {
		return nil, err
	}
	return s, nil
}
