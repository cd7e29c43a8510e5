// Package smtpd is kumogo's inbound ESMTP listener, built on
// github.com/emersion/go-smtp through its Backend and Session interfaces.
//
// One type, session, owns a connection's state. go-smtp reads the client's
// command lines from it (it is go-smtp's net.Conn) and calls it for MAIL,
// RCPT, DATA/BDAT and resets (it is go-smtp's Session). Its files, one per
// concern:
//
//   - conn.go: the connection (socket, reader, banner) and the session type;
//   - commands.go: the command loop, which checks each command and answers
//     it or forwards it to go-smtp (path.go: the envelope path syntax);
//   - seam.go: the one place where go-smtp's replies meet the session: they
//     are replaced by the replies the session decided, never read as text;
//   - replies.go, reply.go: named replies; writing replies, the
//     smtp_server_rewrite_response event, and policy errors made replies;
//   - transaction.go: the mail transaction (MAIL, RCPT, relay control);
//   - body.go, data.go: body framing (one DATA scanner, BDAT chunks),
//     buffers and limits, and Data;
//   - receive.go, records.go: the DATA-time events, hand-off to the queue,
//     Reception and Rejection records;
//   - tls.go, auth.go, proxyproto.go, xclient.go: STARTTLS, AUTH PLAIN,
//     the PROXY protocol, XCLIENT;
//   - accept.go, budget.go, callctx.go: accepting at the fd limit, the
//     memory budget of bodies, the policy call context.
//
// smtpd depends on the policy only through the Policy interface, on the queue
// only through Enqueuer and on logging only through RecordLogger; the daemon
// wires concrete implementations in.
package smtpd
