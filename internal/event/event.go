// Package event names the policy events that kumogo raises, spelled as
// KumoMTA's documentation spells them ("Events" in the reference manual:
// the names a policy passes to kumo.on). Every producer of an event (the
// listener, the scheduler, the HTTP listener, the daemon) and the Lua host
// use these constants, so that a name is written once. It depends on
// nothing.
package event

// Lifecycle events of the daemon.
const (
	PreInit         = "pre_init"
	Init            = "init"
	ValidateConfig  = "validate_config"
	ShutdownLogging = "shutdown_logging"
)

// Events of the SMTP listener, in the order of a session.
const (
	ConnectionAccepted = "smtp_server_connection_accepted"
	Ehlo               = "smtp_server_ehlo"
	AuthPlain          = "smtp_server_auth_plain"
	MailFrom           = "smtp_server_mail_from"
	ListenerDomain     = "get_listener_domain"
	RcptTo             = "smtp_server_rcpt_to"
	Data               = "smtp_server_data"
	SplitTransaction   = "smtp_server_split_transaction"
	MessageReceived    = "smtp_server_message_received"
	RewriteResponse    = "smtp_server_rewrite_response"
	DeferredInject     = "smtp_server_message_deferred_inject"
)

// Events of the delivery engine.
const (
	SpoolMessageEnumerated   = "spool_message_enumerated"
	GetQueueConfig           = "get_queue_config"
	GetEgressPathConfig      = "get_egress_path_config"
	GetEgressSource          = "get_egress_source"
	GetEgressPool            = "get_egress_pool"
	ThrottleInsertReadyQueue = "throttle_insert_ready_queue"
	RequeueMessage           = "requeue_message"
	RewriteDeliveryStatus    = "smtp_client_rewrite_delivery_status"
	// RebindMessage is fired for each message of an admin rebind that
	// asks for it (trigger_rebind_event).
	RebindMessage = "rebind_message"
)

// Events of the HTTP listener.
const (
	HTTPValidateAuthBasic  = "http_server_validate_auth_basic"
	HTTPValidateAuthBearer = "http_server_validate_auth_bearer"
	HTTPMessageGenerated   = "http_message_generated"
)
