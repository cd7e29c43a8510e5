package smtpd

// AUTH PLAIN, answered by the session itself (go-smtp's AUTH texts are not KumoMTA's).

import (
	"encoding/base64"
	"strings"
	"time"

	"github.com/kumogo/kumogo/internal/config"
)

func (ss *session) cmdAuth(arg string) {
	if ss.tls == nil {
		ss.reply(524, "5.7.11 AUTH requires an encrypted channel")
		return
	}
	if ss.authed {
		ss.reply(503, "5.5.1 AUTH me once, can't get authed again!")
		return
	}
	if !ss.ehloOK {
		ss.reply(503, textEhloFirst)
		return
	}
	if ss.t.hasMail {
		ss.reply(503, "5.5.1 AUTH not permitted inside a transaction")
		return
	}
	mech, initial, _ := strings.Cut(arg, " ")
	if !strings.EqualFold(mech, "PLAIN") {
		ss.reply(504, "5.5.4 AUTH "+mech+" not supported")
		return
	}
	resp := strings.TrimSpace(initial)
	if resp == "" {
		ss.reply(334, "")
		ss.flush()
		ss.raw.SetReadDeadline(time.Now().Add(ss.cfg.ClientTimeout))
		line, tooLong, err := ss.readLine(nil)
		if err != nil || tooLong {
			ss.closing = true
			return
		}
		resp = strings.TrimSpace(string(line))
	}
	if resp == "*" {
		ss.reply(501, "5.5.0 AUTH cancelled by client")
		return
	}
	raw, err := base64.StdEncoding.DecodeString(resp)
	if resp == "=" {
		raw, err = nil, nil
	}
	parts := strings.Split(string(raw), "\x00")
	if err != nil || len(parts) != 3 {
		ss.reply(501, "5.5.2 Invalid base64 or malformed PLAIN response")
		ss.authFailed()
		return
	}
	authz, authc, pass := parts[0], parts[1], parts[2]
	if authz == "" {
		authz = authc
	}
	ok := false
	if ss.s.hasAuth {
		ctx, cancel := ss.ctx()
		ok, err = ss.s.deps.Policy.AuthPlain(ctx, authz, authc, pass, ss.meta)
		cancel()
		if err != nil {
			ss.answer(ss.policyReply(err))
			return
		}
	}
	if !ok {
		ss.reply(535, "5.7.8 AUTH invalid")
		ss.authFailed()
		return
	}
	ss.authed = true
	ss.meta.Set("authz_id", authz)
	ss.meta.Set("authn_id", authc)
	ss.reply(235, "2.7.0 AUTH OK")
}

// authFailed counts a failed AUTH attempt; at max_auth_failures the
// session ends with a 421, so that passwords cannot be guessed at the
// speed of the connection.
func (ss *session) authFailed() {
	ss.authFails++
	max := ss.cfg.MaxAuthFailures
	if max == 0 {
		max = config.DefaultMaxAuthFailures
	}
	if max > 0 && ss.authFails >= max {
		ss.s.log.Warn().Str("peer", ss.peer.String()).Int("failures", ss.authFails).Msg("too many failed AUTH attempts; closing the connection")
		ss.reply(421, "4.7.0 "+ss.host()+" too many failed authentication attempts")
	}
}
