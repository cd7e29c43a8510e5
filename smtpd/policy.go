package smtpd

import (
	"context"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/message"
)

// Policy is what the listener needs from the policy engine (implemented by
// runtime.Runtime). Every method runs the named KumoMTA event. A method
// returns a *smtpreply.Rejection when the policy called kumo.reject or
// kumo.disconnect; any other error is a policy failure that ends the
// session with "421 4.3.0 <host> technical difficulties". Methods for an
// event without a handler return their zero values quickly.
//
// A method must not keep msg (or use it from another goroutine) after it
// returns: messages whose queue is "null" go back to a pool once their
// Reception record is written, and are reused for later transactions.
type Policy interface {
	// HasHandler reports whether event has at least one registered handler.
	HasHandler(event string) bool

	// ConnectionAccepted runs smtp_server_connection_accepted.
	ConnectionAccepted(ctx context.Context, cm *message.ConnMeta) error
	// Ehlo runs smtp_server_ehlo. exts is nil for HELO. A nil result keeps
	// the default extension list.
	Ehlo(ctx context.Context, domain string, cm *message.ConnMeta, exts []string) ([]string, error)
	// AuthPlain runs smtp_server_auth_plain and reports whether the
	// credentials are accepted.
	AuthPlain(ctx context.Context, authz, authc, password string, cm *message.ConnMeta) (bool, error)
	// MailFrom runs smtp_server_mail_from.
	MailFrom(ctx context.Context, sender message.Address, cm *message.ConnMeta) error
	// ListenerDomain runs get_listener_domain; nil means no listener domain.
	ListenerDomain(ctx context.Context, domain, listener string, cm *message.ConnMeta) (*config.ListenerDomain, error)
	// RcptTo runs smtp_server_rcpt_to.
	RcptTo(ctx context.Context, rcpt message.Address, cm *message.ConnMeta) error
	// Data runs smtp_server_data on the whole transaction's message.
	Data(ctx context.Context, msg *message.Message, cm *message.ConnMeta) error
	// SplitTransaction runs smtp_server_split_transaction; nil means use
	// the listener's batch_handling.
	SplitTransaction(ctx context.Context, msg *message.Message, cm *message.ConnMeta) ([][]message.Address, error)
	// MessageReceived runs smtp_server_message_received.
	MessageReceived(ctx context.Context, msg *message.Message, cm *message.ConnMeta) error
	// RewriteResponse runs smtp_server_rewrite_response. command is "" when
	// there is none. It returns the (possibly) new code and text.
	RewriteResponse(ctx context.Context, code int, text, command string, cm *message.ConnMeta) (int, string, error)
}
