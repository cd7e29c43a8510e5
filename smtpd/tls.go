package smtpd

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/kumogo/kumogo/internal/certs"
	"github.com/kumogo/kumogo/internal/config"
)

// loadTLS builds the listener's TLS configuration: the configured
// certificate and key, or a self-signed certificate for the listener's host
// name, as KumoMTA does when none is given (internal/certs, shared with the
// HTTP listener), plus tls_required_client_ca.
func loadTLS(cfg config.ESMTPListener) (*tls.Config, error) {
	tc, err := certs.ServerConfig(cfg.TLSCertificate, cfg.TLSPrivateKey, cfg.Hostname)
	if err != nil {
		return nil, err
	}
	if !cfg.TLSRequiredClientCA.IsZero() {
		// tls_required_client_ca: a client that starts TLS must present a
		// certificate signed by one of these CAs; its subject becomes
		// tls_peer_subject_name.
		caPEM, err := cfg.TLSRequiredClientCA.Read()
		if err != nil {
			return nil, fmt.Errorf("tls_required_client_ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(caPEM) {
			return nil, errors.New("tls_required_client_ca: no PEM certificate found")
		}
		tc.ClientCAs = pool
		tc.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return tc, nil
}

func (ss *session) cmdStartTLS() error {
	if ss.tls != nil {
		ss.reply(501, "Cannot STARTTLS as TLS is already active")
		return nil
	}
	if ss.tlsConf == nil {
		ss.reply(502, textUnimplemented)
		return nil
	}
	ss.reply(220, "Ready to Start TLS")
	ss.flush()
	if ss.closing {
		return io.EOF
	}
	// Anything pipelined after STARTTLS was sent in clear text: drop it.
	if n := ss.rd.Buffered(); n > 0 {
		ss.rd.Discard(n)
	}
	tc := tls.Server(ss.raw, ss.tlsConf)
	ss.raw.SetDeadline(time.Now().Add(ss.cfg.ClientTimeout))
	if err := tc.Handshake(); err != nil {
		ss.s.log.Debug().Err(err).Str("peer", ss.peer.String()).Msg("TLS handshake failed")
		ss.closing = true
		return io.EOF
	}
	ss.raw.SetWriteDeadline(time.Time{})
	st := tc.ConnectionState()
	ss.tls = &st
	ss.cur = tc
	ss.rd.Reset(tc)
	ss.meta.Set("tls_cipher", tls.CipherSuiteName(st.CipherSuite))
	ss.meta.Set("tls_protocol_version", tls.VersionName(st.Version))
	if len(st.PeerCertificates) > 0 {
		ss.meta.Set("tls_peer_subject_name", st.PeerCertificates[0].Subject.String())
	}
	// RFC 3207: forget the EHLO and any transaction.
	ss.startOver()
	return nil
}

// startOver forgets the greeting and the transaction (after STARTTLS or
// XCLIENT, which go-smtp never sees). The client has to say EHLO again,
// and go-smtp forgets its own transaction when that EHLO reaches it; until
// then the session refuses every command that would find it (MAIL needs
// the EHLO; RCPT, DATA and BDAT a MAIL).
func (ss *session) startOver() {
	ss.ehloOK = false
	ss.t.reset()
}

// tlsInfo renders "<version>:<cipher>" for the Received header (made
// once per session).
func (c *client) tlsInfo() string {
	if c.tls == nil {
		return ""
	}
	if c.tlsText == "" {
		c.tlsText = tls.VersionName(c.tls.Version) + ":" + tls.CipherSuiteName(c.tls.CipherSuite)
	}
	return c.tlsText
}
