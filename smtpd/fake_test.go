package smtpd

import (
	"context"
	"fmt"
	"io"
	"net/smtp"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/logrecord"
	"github.com/kumogo/kumogo/internal/message"
	"github.com/kumogo/kumogo/internal/testutil"
)

// fakePolicy is a Go stand-in for a Lua policy; nil hooks have no handler.
type fakePolicy struct {
	connAccepted func(cm *message.ConnMeta) error
	ehlo         func(domain string, exts []string) ([]string, error)
	auth         func(authz, authc, pass string) (bool, error)
	mail         func(a message.Address) error
	listenerDom  func(domain string) (*config.ListenerDomain, error)
	rcpt         func(a message.Address) error
	data         func(m *message.Message) error
	split        func(m *message.Message) ([][]message.Address, error)
	received     func(m *message.Message) error
	receivedCtx  func(ctx context.Context, m *message.Message) error
	rewrite      func(code int, text, cmd string) (int, string, error)
}

func (p *fakePolicy) HasHandler(e string) bool {
	switch e {
	case "smtp_server_connection_accepted":
		return p.connAccepted != nil
	case "smtp_server_ehlo":
		return p.ehlo != nil
	case "smtp_server_auth_plain":
		return p.auth != nil
	case "smtp_server_mail_from":
		return p.mail != nil
	case "get_listener_domain":
		return p.listenerDom != nil
	case "smtp_server_rcpt_to":
		return p.rcpt != nil
	case "smtp_server_data":
		return p.data != nil
	case "smtp_server_split_transaction":
		return p.split != nil
	case "smtp_server_message_received":
		return p.received != nil || p.receivedCtx != nil
	case "smtp_server_rewrite_response":
		return p.rewrite != nil
	}
	return false
}

func (p *fakePolicy) ConnectionAccepted(_ context.Context, cm *message.ConnMeta) error {
	return p.connAccepted(cm)
}
func (p *fakePolicy) Ehlo(_ context.Context, d string, _ *message.ConnMeta, exts []string) ([]string, error) {
	return p.ehlo(d, exts)
}
func (p *fakePolicy) AuthPlain(_ context.Context, a, b, c string, _ *message.ConnMeta) (bool, error) {
	return p.auth(a, b, c)
}
func (p *fakePolicy) MailFrom(_ context.Context, a message.Address, _ *message.ConnMeta) error {
	return p.mail(a)
}
func (p *fakePolicy) ListenerDomain(_ context.Context, d, _ string, _ *message.ConnMeta) (*config.ListenerDomain, error) {
	return p.listenerDom(d)
}
func (p *fakePolicy) RcptTo(_ context.Context, a message.Address, _ *message.ConnMeta) error {
	return p.rcpt(a)
}
func (p *fakePolicy) Data(_ context.Context, m *message.Message, _ *message.ConnMeta) error {
	return p.data(m)
}
func (p *fakePolicy) SplitTransaction(_ context.Context, m *message.Message, _ *message.ConnMeta) ([][]message.Address, error) {
	return p.split(m)
}
func (p *fakePolicy) MessageReceived(ctx context.Context, m *message.Message, _ *message.ConnMeta) error {
	if p.receivedCtx != nil {
		return p.receivedCtx(ctx, m)
	}
	return p.received(m)
}
func (p *fakePolicy) RewriteResponse(_ context.Context, code int, text, cmd string, _ *message.ConnMeta) (int, string, error) {
	return p.rewrite(code, text, cmd)
}

// recLogger records log records in memory.
type recLogger = testutil.RecordLog

// nullPolicy sends every message to queue "null", like sink.lua.
func nullPolicy() *fakePolicy {
	return &fakePolicy{received: func(m *message.Message) error {
		m.SetMeta("queue", "null")
		return nil
	}}
}

func testConfig() config.ESMTPListener {
	c := config.DefaultESMTPListener("mx.test")
	c.Listen = "127.0.0.1:0"
	c.ClientTimeout = 10 * time.Second
	return c
}

type testServer struct {
	srv  *Server
	addr string
	recs *recLogger
}

func startServer(t testing.TB, cfg config.ESMTPListener, p Policy) *testServer {
	return startServerWith(t, cfg, p, nil, &recLogger{})
}

func startServerWith(t testing.TB, cfg config.ESMTPListener, p Policy, enq Enqueuer, recs *recLogger) *testServer {
	t.Helper()
	srv, err := New(cfg, Deps{Policy: p, Logger: recs, Enqueuer: enq, Log: zerolog.New(io.Discard)})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(); err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-done
	})
	return &testServer{srv: srv, addr: srv.Addr().String(), recs: recs}
}

func contextWithTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

// fakeEnqueuer records the order of Spool, Reception and Insert.
type fakeEnqueuer struct {
	mu        sync.Mutex
	events    []string
	spoolErr  error
	insertErr error
	recs      *recLogger
	msgs      []*message.Message
}

func (e *fakeEnqueuer) Spool(ctx context.Context, m *message.Message, deferred bool) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.events = append(e.events, "spool")
	return e.spoolErr
}
func (e *fakeEnqueuer) Insert(ctx context.Context, m *message.Message) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.events = append(e.events, fmt.Sprintf("insert(receptions=%d)", len(e.recs.ByType(logrecord.Reception))))
	e.msgs = append(e.msgs, m)
	return e.insertErr
}
func (e *fakeEnqueuer) Unspool(ctx context.Context, m *message.Message) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.events = append(e.events, "unspool")
}

// clientSend sends one message from a@x.com to b@y.com with subject
// through a net/smtp client.
func clientSend(t *testing.T, cl *smtp.Client, subject string) {
	t.Helper()
	if err := cl.Mail("a@x.com"); err != nil {
		t.Fatal(err)
	}
	if err := cl.Rcpt("b@y.com"); err != nil {
		t.Fatal(err)
	}
	w, err := cl.Data()
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("Subject: " + subject + "\r\n\r\nhi\r\n"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}
