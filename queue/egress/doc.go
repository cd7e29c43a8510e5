// Package egress is kumogo's outbound SMTP: the client sessions that
// deliver messages to the hosts that queue/egress/mx resolves, and the
// classification of their responses (internal/smtpreply; KumoMTA docs:
// "Log Record" for the outcomes and synthetic texts). It is a library
// for the delivery engine in package queue, which owns ready queues,
// connection limits and retries; egress knows nothing of them beyond the
// scheduler's interfaces, which Router and Connector (scheduler.go)
// implement: cmd/kumogo only builds them.
//
// A delivery goes:
//
//	plan, err := resolver.Plan(ctx, routingDomain, mxList, path.SMTPPort, path.IPLookupStrategy)
//	sess, err := dialer.Connect(ctx, plan, &path, &source, "")  // prohibited/skip hosts, next host on failure
//	res, err := sess.Send(ctx, egress.Envelope{Sender: s, Recipients: rcpts}, body)
//	for i, r := range res.Responses { ... r.Outcome() ... }   // Delivery, TransientFailure, Bounce
//	sess.Close()                                                // QUIT
//
// Errors of Plan, FilterHosts, Dial and Connect map to the response to
// record with ResponseFor.
//
// # Why an own client
//
// The client is written here on bufio and net rather than on go-smtp's
// client. A relay needs things that client does not give: MAIL, RCPT and
// DATA (and RSET) written in one pipelined batch with the responses read
// afterwards (one round trip per message instead of 3 + recipients), the
// body sent as a single BDAT chunk with writev and without a copy, a
// separate timeout for every command as make_egress_path configures them,
// the exact response of each command (code, enhanced code, text, the
// command it answered) for log records, and KumoMTA's synthetic responses
// for transport failures and timeouts. go-smtp's client sends each command
// in lockstep, hides responses behind error values, has one timeout for
// everything and has no BDAT. What the client needs of SMTP is small
// (a reply parser, EHLO keywords, STARTTLS, AUTH PLAIN, dot-stuffing), so
// the own client is also the shorter path to the relay throughput targets.
package egress
