// Package queue is kumogo's delivery scheduler. Accepted messages enter a
// scheduled queue named after their meta (§5.1 of the reference); each
// scheduled queue holds its messages in due-time order and, when a message
// is due, moves it to the ready queue of its egress path (egress source and
// destination site). Ready queues run dispatchers that deliver over
// connections obtained from a Connector, classify each response (Delivery,
// TransientFailure with exponential backoff and jitter, Bounce, Expiration)
// and remove finished messages from the spool.
//
// queue depends on the policy, the spool, the log and the outbound SMTP
// client only through the interfaces in this package; the daemon wires the
// concrete runtime, queue/spool, internal/logrecord and queue/egress in.
package queue
