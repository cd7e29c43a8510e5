package smtpd

// The mail transaction, and the go-smtp Session methods that build it.

import (
	"strings"
	"sync"

	smtp "github.com/emersion/go-smtp"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/logrecord"
	"github.com/kumogo/kumogo/internal/message"
)

// txn is the state of one mail transaction, kept once: go-smtp's MAIL,
// RCPT and DATA/BDAT handling calls the session, which fills it, and every
// reset of go-smtp's own transaction (RSET, EHLO, the end of DATA or BDAT)
// calls Reset, which clears it. STARTTLS and XCLIENT, answered without
// go-smtp, clear it themselves.
type txn struct {
	from    message.Address
	rcpts   []message.Address
	hasMail bool
	// "OK <sender>" and "OK <last accepted recipient>" of the transaction
	// (empty outside one): the reply texts, and the addresses named in
	// Rejection records.
	mailReply []byte
	rcptReply []byte

	// mu guards body: Data of a BDAT transaction runs on a goroutine of
	// go-smtp's, and go-smtp's reset does not wait for it.
	mu   sync.Mutex
	body bodyBuf // the BDAT chunks received so far

	// scratch of receive (receive.go) and of the Reception record
	// (records.go), kept from message to message
	msgs    []*message.Message
	bufs    []*[]byte
	batches [][]message.Address
	hdrBuf  []byte
	idsBuf  []byte
	// dataReply is the text of the reply to an accepted DATA or last BDAT
	dataReply []byte
	rec       logrecord.Record
	recPeer   logrecord.PeerAddress
	// reports is what the listener domains of the transaction say about
	// OOB and feedback reports (reports.go), set before receive
	reports reportPlan
}

func (t *txn) reset() {
	t.from = message.Address{}
	t.rcpts = t.rcpts[:0]
	t.hasMail = false
	t.mailReply = t.mailReply[:0]
	t.rcptReply = t.rcptReply[:0]
	t.mu.Lock()
	t.body.release()
	t.mu.Unlock()
}

// takeBody hands the body received so far to Data.
func (t *txn) takeBody() bodyBuf {
	t.mu.Lock()
	b := t.body
	t.body = bodyBuf{}
	t.mu.Unlock()
	return b
}

var _ smtp.Session = (*session)(nil)

// Reset is called by go-smtp whenever it resets its transaction.
func (ss *session) Reset() { ss.t.reset() }

func (ss *session) Logout() error {
	ss.t.reset()
	return nil
}

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	addr, err := message.ParseAddress(from)
	if err != nil {
		return ss.refuse(replyBadSender(from))
	}
	if ss.s.hasMail {
		ctx, cancel := ss.ctx()
		err = ss.s.deps.Policy.MailFrom(ctx, addr, ss.meta)
		cancel()
		if err != nil {
			return ss.refusePolicy(err)
		}
	}
	t := &ss.t
	t.from, t.hasMail = addr, true
	t.mailReply = addr.AppendTo(append(t.mailReply[:0], "OK "...))
	ss.decide(decision{code: 250, textB: t.mailReply})
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	cfg, t := ss.cfg, &ss.t
	addr, err := message.ParseAddress(to)
	postmaster := err != nil && strings.EqualFold(to, "postmaster")
	if postmaster {
		// RFC 5321 section 4.5.1: <postmaster> without a domain must be
		// accepted. As KumoMTA's EnvelopeAddress::Postmaster, its user is
		// "postmaster" and its domain empty; it names this host, so it is
		// not relaying, and smtp_server_rcpt_to decides like for any
		// other recipient.
		addr, err = message.Address{User: "postmaster"}, nil
	}
	if err != nil || addr.IsNull() {
		return ss.refuse(replyBadRecipient)
	}
	ok := postmaster
	if !ok {
		ok, err = ss.relayAllowed(addr)
		if err != nil {
			return ss.refusePolicy(err)
		}
	}
	if !ok {
		return ss.refuse(rep(550, "5.7.1 relaying not permitted for "+ss.peer.String()))
	}
	if cfg.MaxRecipientsPerMessage > 0 && len(t.rcpts) >= cfg.MaxRecipientsPerMessage {
		return ss.refuse(rep(452, "4.5.3 too many recipients"))
	}
	if cfg.MaxMessagesPerConnection > 0 && ss.rcptTotal >= cfg.MaxMessagesPerConnection {
		if len(t.rcpts) == 0 {
			return ss.refuse(rep(421, "4.5.3 "+ss.host()+" too many recipients on this connection"))
		}
		return ss.refuse(rep(452, "4.5.3 too many recipients on this connection"))
	}
	if ss.s.hasRcpt {
		ctx, cancel := ss.ctx()
		err = ss.s.deps.Policy.RcptTo(ctx, addr, ss.meta)
		cancel()
		if err != nil {
			return ss.refusePolicy(err)
		}
	}
	t.rcpts = append(t.rcpts, addr)
	ss.rcptTotal++
	t.rcptReply = addr.AppendTo(append(t.rcptReply[:0], "OK "...))
	ss.decide(decision{code: 250, textB: t.rcptReply})
	return nil
}

// relayAllowed applies KumoMTA's relay rule: the peer is in relay_hosts, or
// the sender domain's listener domain lists the peer in relay_from, or the
// recipient domain's listener domain has relay_to (or OOB/ARF logging).
func (ss *session) relayAllowed(rcpt message.Address) (bool, error) {
	peer := ss.peer.Addr()
	if ss.cfg.RelayHosts.Contains(peer) {
		return true, nil
	}
	if !ss.s.hasListenerDomain {
		return false, nil
	}
	if from := ss.t.from; !from.IsNull() {
		ld, err := ss.listenerDomain(from.Domain)
		if err != nil {
			return false, err
		}
		if ld != nil && ld.RelayFrom.Contains(peer) {
			return true, nil
		}
	}
	ld, err := ss.listenerDomain(rcpt.Domain)
	if err != nil {
		return false, err
	}
	if ld != nil && (ld.RelayTo || (ld.LogOOB != "" && ld.LogOOB != "Ignore") || (ld.LogARF != "" && ld.LogARF != "Ignore")) {
		return true, nil
	}
	return false, nil
}

func (ss *session) listenerDomain(domain string) (*config.ListenerDomain, error) {
	domain = strings.ToLower(domain)
	if ld, ok := ss.ldCache[domain]; ok {
		return ld, nil
	}
	ctx, cancel := ss.ctx()
	ld, err := ss.s.deps.Policy.ListenerDomain(ctx, domain, ss.local.String(), ss.meta)
	cancel()
	if err != nil {
		return nil, err
	}
	if ss.ldCache == nil {
		ss.ldCache = make(map[string]*config.ListenerDomain, 4)
	} else if len(ss.ldCache) >= 16 {
		clear(ss.ldCache)
	}
	ss.ldCache[domain] = ld
	return ld, nil
}
