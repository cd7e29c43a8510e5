package egress

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"strings"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/smtpreply"
)

// This file is the session set-up after connecting: banner, EHLO (or
// HELO), STARTTLS and AUTH PLAIN, as Dial runs them.

// handshake reads the banner, says EHLO, upgrades with STARTTLS when
// tlsMode asks for it (saying EHLO again) and authenticates when the path
// names a user.
func (s *Session) handshake(ctx context.Context, d *Dialer, tlsMode string) error {
	defer s.watch(ctx)()
	banner, err := s.read(ctx, "", s.path.BannerTimeout)
	if err != nil {
		return s.annotate("reading banner", err)
	}
	s.banner = banner
	if banner.Code < 200 || banner.Code >= 300 {
		s.quit(ctx)
		return &smtpreply.Error{Response: banner}
	}
	if err := s.hello(ctx); err != nil {
		return err
	}
	_, offered := s.ext["STARTTLS"]
	switch tlsMode {
	case TLSRequired, TLSRequiredInsecure:
		if !offered {
			s.quit(ctx)
			return &smtpreply.Error{Response: smtpreply.Response{Code: 400, Content: fmt.Sprintf(
				"KumoMTA internal: tls policy is %s but STARTTLS is not advertised by %s", tlsMode, s.peer())}}
		}
	case TLSDisabled:
		offered = false
	}
	if offered {
		insecure := tlsMode == TLSOpportunisticInsecure || tlsMode == TLSRequiredInsecure
		if err := s.starttls(ctx, d, insecure); err != nil {
			return err
		}
		if err := s.hello(ctx); err != nil {
			return err
		}
	}
	if s.path.SMTPAuthPlainUsername != "" {
		if err := s.auth(ctx); err != nil {
			return err
		}
	}
	return nil
}

// hello says EHLO, falling back to HELO when the peer refuses EHLO with a
// 5xx.
func (s *Session) hello(ctx context.Context) error {
	cmd := "EHLO " + s.ehloName + "\r\n"
	resp, err := s.roundTrip(ctx, cmd, s.path.EhloTimeout)
	if err != nil {
		return s.annotate("EHLO", err)
	}
	if resp.Code == 250 {
		s.ehlo = resp
		s.ext = parseExtensions(resp.Content)
		return nil
	}
	if resp.Code >= 500 && resp.Code < 600 {
		cmd = "HELO " + s.ehloName + "\r\n"
		hresp, err := s.roundTrip(ctx, cmd, s.path.EhloTimeout)
		if err != nil {
			return s.annotate("HELO", err)
		}
		if hresp.Code == 250 {
			s.ehlo = hresp
			s.ext = map[string]string{}
			return nil
		}
		resp = hresp
	}
	s.quit(ctx)
	return &smtpreply.Error{Response: resp}
}

// parseExtensions reads the keywords of an EHLO response (every line after
// the first; the enhanced-code stripping never applies to EHLO lines).
func parseExtensions(content string) map[string]string {
	ext := make(map[string]string)
	lines := strings.Split(content, "\n")
	for _, l := range lines[1:] {
		kw, params, _ := strings.Cut(strings.TrimSpace(l), " ")
		if kw != "" {
			ext[strings.ToUpper(kw)] = params
		}
	}
	return ext
}

func (s *Session) starttls(ctx context.Context, d *Dialer, insecure bool) error {
	resp, err := s.roundTrip(ctx, "STARTTLS\r\n", s.path.StartTLSTimeout)
	if err != nil {
		return s.annotate("STARTTLS", err)
	}
	if resp.Code != 220 {
		s.quit(ctx)
		return &smtpreply.Error{Response: resp}
	}
	cfg := &tls.Config{
		ServerName:         strings.TrimSuffix(s.cand.Name, "."),
		InsecureSkipVerify: insecure,
		RootCAs:            d.RootCAs,
	}
	if cfg.ServerName == "" {
		// Verified against the certificate's IP addresses; no SNI is sent.
		cfg.ServerName = s.cand.Addr.String()
	}
	if recs := daneRecords(ctx); len(recs) > 0 {
		// DANE replaces the PKIX checks (dane.go)
		name := cfg.ServerName
		cfg.InsecureSkipVerify = true
		cfg.VerifyConnection = func(cs tls.ConnectionState) error { return verifyDANE(cs, recs, name) }
	}
	if !s.path.TLSCertificate.IsZero() || !s.path.TLSPrivateKey.IsZero() {
		cert, err := loadKeyPair(s.path.TLSCertificate, s.path.TLSPrivateKey)
		if err != nil {
			return fmt.Errorf("egress: client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	tc := tls.Client(s.conn, cfg)
	hctx, cancel := context.WithTimeout(ctx, s.path.StartTLSTimeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		s.broken = true
		return &tlsHandshakeError{fmt.Errorf("egress: TLS handshake with %s failed: %w", s.peer(), err)}
	}
	st := tc.ConnectionState()
	s.tls = &st
	s.conn = tc
	s.r.Reset(tc)
	return nil
}

// tlsHandshakeError marks failed handshakes, after which Connect may
// reconnect without TLS (opportunistic_tls_reconnect_on_failed_handshake).
type tlsHandshakeError struct{ error }

func (e *tlsHandshakeError) Unwrap() error { return e.error }

func loadKeyPair(certSrc, keySrc config.KeySource) (tls.Certificate, error) {
	certPEM, err := certSrc.Read()
	if err != nil {
		return tls.Certificate{}, err
	}
	keyPEM, err := keySrc.Read()
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(certPEM, keyPEM)
}

func (s *Session) auth(ctx context.Context) error {
	p := s.path
	if s.tls == nil && !p.AllowSMTPAuthPlainWithoutTLS {
		s.quit(ctx)
		return &smtpreply.Error{Response: smtpreply.Response{Code: 400, Content: fmt.Sprintf(
			"KumoMTA internal: TLS is not enabled and AUTH PLAIN is required. Skipping (%s)", s.peer())}}
	}
	var password []byte
	if !p.SMTPAuthPlainPassword.IsZero() {
		pw, err := p.SMTPAuthPlainPassword.Read()
		if err != nil {
			return fmt.Errorf("egress: smtp_auth_plain_password: %w", err)
		}
		password = pw
	}
	raw := make([]byte, 0, 2+len(p.SMTPAuthPlainUsername)+len(password))
	raw = append(raw, 0)
	raw = append(raw, p.SMTPAuthPlainUsername...)
	raw = append(raw, 0)
	raw = append(raw, password...)
	resp, err := s.roundTrip(ctx, "AUTH PLAIN "+base64.StdEncoding.EncodeToString(raw)+"\r\n", p.AuthTimeout)
	if err != nil {
		return s.annotate("AUTH", err)
	}
	if resp.Code != 235 {
		s.quit(ctx)
		return &smtpreply.Error{Response: resp}
	}
	return nil
}
