// Package queue is kumogo's delivery scheduler. Accepted messages enter a
// scheduled queue named after their meta (KumoMTA's "Queues" page: the
// campaign:tenant@domain!routing_domain naming of msg:queue_name); each
// scheduled queue holds its messages in due-time order and, when a message
// is due, moves it to the ready queue of its egress path (egress source and
// destination site). Ready queues run dispatchers that deliver over
// connections obtained from a Connector, classify each response (Delivery,
// TransientFailure with exponential backoff and jitter, Bounce, Expiration)
// and remove finished messages from the spool.
//
// The files follow a message: manager.go (the Manager, its scheduled
// queues and their config), reception.go (Spool, Insert, Restore and the
// deferred_spool messages), timers.go (the heap of waiting messages),
// promotion.go (scheduled → ready, source selection), ready.go (ready
// queues and their dispatchers), outcomes.go (classification, records,
// retries, expiry) and events.go (the delivery-side policy events).
//
// queue depends on the policy, the spool, the log and the outbound SMTP
// client only through the interfaces in this package; the daemon wires the
// concrete runtime, queue/spool, internal/logrecord and queue/egress in.
package queue
