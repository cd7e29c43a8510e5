package smtpd

// AUTH PLAIN, answered by the front end.

import (
	"encoding/base64"
	"strings"
	"time"

	"github.com/kumogo/kumogo/internal/config"
)

func (f *frontConn) cmdAuth(arg string) {
	if f.tls == nil {
		f.reply(524, "5.7.11 AUTH requires an encrypted channel")
		return
	}
	if f.authed {
		f.reply(503, "5.5.1 AUTH me once, can't get authed again!")
		return
	}
	if !f.ehloOK {
		f.reply(503, textEhloFirst)
		return
	}
	if f.hasMail {
		f.reply(503, "5.5.1 AUTH not permitted inside a transaction")
		return
	}
	mech, initial, _ := strings.Cut(arg, " ")
	if !strings.EqualFold(mech, "PLAIN") {
		f.reply(504, "5.5.4 AUTH "+mech+" not supported")
		return
	}
	resp := strings.TrimSpace(initial)
	if resp == "" {
		f.reply(334, "")
		f.flush()
		f.raw.SetReadDeadline(time.Now().Add(f.cfg.ClientTimeout))
		line, tooLong, err := f.readLine(nil)
		if err != nil || tooLong {
			f.closing = true
			return
		}
		resp = strings.TrimSpace(string(line))
	}
	if resp == "*" {
		f.reply(501, "5.5.0 AUTH cancelled by client")
		return
	}
	raw, err := base64.StdEncoding.DecodeString(resp)
	if resp == "=" {
		raw, err = nil, nil
	}
	parts := strings.Split(string(raw), "\x00")
	if err != nil || len(parts) != 3 {
		f.reply(501, "5.5.2 Invalid base64 or malformed PLAIN response")
		f.authFailed()
		return
	}
	authz, authc, pass := parts[0], parts[1], parts[2]
	if authz == "" {
		authz = authc
	}
	ok := false
	if f.s.hasAuth {
		ctx, cancel := f.ctx()
		ok, err = f.s.deps.Policy.AuthPlain(ctx, authz, authc, pass, f.meta)
		cancel()
		if err != nil {
			f.policyFailure(err)
			return
		}
	}
	if !ok {
		f.reply(535, "5.7.8 AUTH invalid")
		f.authFailed()
		return
	}
	f.authed = true
	f.meta.Set("authz_id", authz)
	f.meta.Set("authn_id", authc)
	f.reply(235, "2.7.0 AUTH OK")
}

// authFailed counts a failed AUTH attempt; at max_auth_failures the
// session ends with a 421, so that passwords cannot be guessed at the
// speed of the connection.
func (f *frontConn) authFailed() {
	f.authFails++
	max := f.cfg.MaxAuthFailures
	if max == 0 {
		max = config.DefaultMaxAuthFailures
	}
	if max > 0 && f.authFails >= max {
		f.s.log.Warn().Str("peer", f.peer.String()).Int("failures", f.authFails).Msg("too many failed AUTH attempts; closing the connection")
		f.reply(421, "4.7.0 "+f.host()+" too many failed authentication attempts")
	}
}
