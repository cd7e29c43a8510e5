package queue

import (
	"context"
	"time"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/logrecord"
	"github.com/kumogo/kumogo/internal/message"
	"github.com/kumogo/kumogo/internal/smtpreply"
)

// Policy is what the scheduler needs from the policy engine (implemented by
// runtime.Runtime).
type Policy interface {
	HasHandler(event string) bool
	GetQueueConfig(ctx context.Context, domain string, tenant, campaign, routingDomain *string) (config.QueueConfig, error)
	GetEgressPathConfig(ctx context.Context, routingDomain, source, siteName string) (config.EgressPath, error)
	GetEgressSource(ctx context.Context, name string) (config.EgressSource, error)
	GetEgressPool(ctx context.Context, name string) (config.EgressPool, error)
}

// EventPolicy is the optional part of Policy for the delivery events
// requeue_message and smtp_client_rewrite_delivery_status (runtime.Runtime
// implements it).
type EventPolicy interface {
	RequeueMessage(ctx context.Context, msg *message.Message, response string, insertContext []string, incrementAttempts bool, delay *time.Duration) error
	RewriteDeliveryStatus(ctx context.Context, response, domain, tenant, campaign, routingDomain string) (code int, changed bool, err error)
	ThrottleInsertReadyQueue(ctx context.Context, msg *message.Message) error
}

// DeferredInjectPolicy is the optional part of Policy that runs
// smtp_server_message_deferred_inject for messages in
// message.DeferredInjectQueue (runtime.Runtime implements it).
type DeferredInjectPolicy interface {
	DeferredInject(ctx context.Context, msg *message.Message) error
}

// Spool is the durable message store (implemented by queue/spool.Spools).
type Spool interface {
	Save(ctx context.Context, msg *message.Message, sync bool) error
	Remove(ctx context.Context, id string) error
	// LoadData reads a stored body back: messages waiting for a later
	// attempt do not keep their bodies in memory.
	LoadData(ctx context.Context, id string) ([]byte, error)
	// Load reads a whole stored message back (compact.go: waiting
	// messages are held by id). An error for an id that is not stored
	// has a NotFound() bool method that returns true.
	Load(ctx context.Context, id string) (*message.Message, error)
}

// Logger receives log records (implemented by the daemon's fan-out over
// internal/logrecord loggers).
type Logger interface {
	Enabled() bool
	Log(rec *logrecord.Record, msg *message.Message)
}

// Route is a resolved destination: where a routing domain's mail goes.
type Route interface {
	// Site is the site name shared by domains with the same MX hosts.
	Site() string
}

// Router resolves a routing domain (or an mx_list) into a Route.
type Router interface {
	Route(ctx context.Context, routingDomain string, proto *config.QueueProtocol) (Route, error)
}

// Connector opens delivery connections for a route.
type Connector interface {
	Connect(ctx context.Context, route Route, path *config.EgressPath, src *config.EgressSource) (Conn, error)
}

// Conn is one outbound connection.
type Conn interface {
	// Send delivers one message (one transaction). It returns one response
	// per recipient. A non-nil error means the connection failed; the
	// responses then hold the synthetic transient failure to record.
	Send(ctx context.Context, msg *message.Message) ([]RcptResponse, error)
	// Usable reports whether another transaction may use the connection.
	Usable() bool
	Info() ConnInfo
	Close()
}

// RcptResponse is the final response for one recipient.
type RcptResponse struct {
	Recipient message.Address
	Response  smtpreply.Response
}

// ConnInfo describes an outbound connection for log records.
type ConnInfo struct {
	PeerName   string
	PeerAddr   string
	SourceAddr string
	// ProxyServer and ProxyProtocol ("haproxy", "socks5") name the proxy
	// a delivery went through (source_address.server and .protocol).
	ProxyServer   string
	ProxyProtocol string
	TLSCipher     string
	TLSVersion    string
	SessionID     string
	// DeliveryProtocol names the protocol in records ("" is ESMTP; Lua,
	// Maildir for the custom_lua and maildir protocols).
	DeliveryProtocol string
}
