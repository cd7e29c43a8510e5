// Package amqpclient publishes to AMQP 0-9-1 brokers (RabbitMQ) through
// github.com/rabbitmq/amqp091-go, for kumo.amqp (KumoMTA's kumo.amqp
// pages): Pools holds one connection pool per distinct set of connection
// parameters, as basic_publish shares connections between calls, and a
// Pool publishes with publisher confirms so that a publish returns only
// once the broker has taken the message (or fails).
package amqpclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Conn are the connection parameters of basic_publish's `connection`
// table (KumoMTA's basic_publish page); zero values take the defaults.
type Conn struct {
	Host             string
	Port             int
	Username         string
	Password         string
	VHost            string
	ConnectionName   string
	Heartbeat        int // seconds
	EnableTLS        bool
	RootCACert       string // file
	ClientCert       string // file
	ClientPrivateKey string // file
	PoolSize         int
	ConnectTimeout   time.Duration
	RecycleTimeout   time.Duration
	WaitTimeout      time.Duration
	PublishTimeout   time.Duration
}

// Message is one publish.
type Message struct {
	Exchange   string
	RoutingKey string
	Mandatory  bool
	Immediate  bool
	amqp.Publishing
}

// Defaults used when Conn leaves a timeout unset.
const (
	defaultConnectTimeout = 10 * time.Second
	defaultWaitTimeout    = 30 * time.Second
	defaultPublishTimeout = 30 * time.Second
)

func (c Conn) withDefaults() Conn {
	if c.PoolSize <= 0 {
		c.PoolSize = runtime.NumCPU() * 4 // KumoMTA's default
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = defaultConnectTimeout
	}
	if c.WaitTimeout <= 0 {
		c.WaitTimeout = defaultWaitTimeout
	}
	if c.PublishTimeout <= 0 {
		c.PublishTimeout = defaultPublishTimeout
	}
	if c.Username == "" {
		c.Username = "guest"
	}
	if c.Password == "" {
		c.Password = "guest"
	}
	if c.Port == 0 {
		c.Port = 5672
		if c.EnableTLS {
			c.Port = 5671
		}
	}
	return c
}

// URL is the amqp:// or amqps:// URL of c (without the password).
func (c Conn) URL() string {
	c = c.withDefaults()
	u := url.URL{Scheme: "amqp", Host: net.JoinHostPort(c.Host, strconv.Itoa(c.Port)), Path: "/" + c.VHost}
	if c.EnableTLS {
		u.Scheme = "amqps"
	}
	return u.String()
}

// Dial opens one connection as c describes.
func Dial(ctx context.Context, c Conn) (*amqp.Connection, error) {
	c = c.withDefaults()
	if c.Host == "" {
		return nil, errors.New("connection.host is required")
	}
	cfg := amqp.Config{
		SASL:       []amqp.Authentication{&amqp.PlainAuth{Username: c.Username, Password: c.Password}},
		Vhost:      c.VHost,
		Heartbeat:  time.Duration(c.Heartbeat) * time.Second,
		Properties: amqp.NewConnectionProperties(),
	}
	if cfg.Vhost == "" {
		cfg.Vhost = "/"
	}
	if c.ConnectionName != "" {
		cfg.Properties.SetClientConnectionName(c.ConnectionName)
	}
	if c.EnableTLS {
		tc, err := tlsConfig(c)
		if err != nil {
			return nil, err
		}
		cfg.TLSClientConfig = tc
	}
	timeout := c.ConnectTimeout
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < timeout {
		timeout = time.Until(dl)
	}
	cfg.Dial = func(network, addr string) (net.Conn, error) {
		d := net.Dialer{Timeout: timeout}
		conn, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		// bounds the handshake; amqp091 clears the deadline once open
		if err := conn.SetDeadline(time.Now().Add(timeout)); err != nil {
			conn.Close()
			return nil, err
		}
		return conn, nil
	}
	conn, err := amqp.DialConfig(c.URL(), cfg)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", c.URL(), err)
	}
	return conn, nil
}

func tlsConfig(c Conn) (*tls.Config, error) {
	tc := &tls.Config{ServerName: c.Host, MinVersion: tls.VersionTLS12}
	if c.RootCACert != "" {
		pem, err := os.ReadFile(c.RootCACert)
		if err != nil {
			return nil, fmt.Errorf("root_ca_cert: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("root_ca_cert %s: no certificate found", c.RootCACert)
		}
		tc.RootCAs = pool
	}
	if c.ClientCert != "" || c.ClientPrivateKey != "" {
		cert, err := tls.LoadX509KeyPair(c.ClientCert, c.ClientPrivateKey)
		if err != nil {
			return nil, fmt.Errorf("client_cert/client_private_key: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// session is a pooled connection with a channel in confirm mode.
type session struct {
	conn    *amqp.Connection
	ch      *amqp.Channel
	returns chan amqp.Return
}

func (s *session) close() {
	s.conn.Close()
}

func (s *session) alive() bool { return !s.conn.IsClosed() && !s.ch.IsClosed() }

// Pool is up to PoolSize connections to one broker.
type Pool struct {
	cfg   Conn
	slots chan struct{} // a token per connection in use or idle
	mu    sync.Mutex
	idle  []*session
}

func newPool(c Conn) *Pool {
	c = c.withDefaults()
	return &Pool{cfg: c, slots: make(chan struct{}, c.PoolSize)}
}

// Publish sends m and waits for the broker's confirmation: a nack, a
// message returned as unroutable (mandatory), a closed connection or the
// publish timeout is an error.
func (p *Pool) Publish(ctx context.Context, m Message) error {
	wctx, cancel := context.WithTimeout(ctx, p.cfg.WaitTimeout)
	select {
	case p.slots <- struct{}{}:
		cancel()
	case <-wctx.Done():
		cancel()
		return fmt.Errorf("waiting for a free connection to %s: %w", p.cfg.URL(), wctx.Err())
	}
	s, err := p.get(ctx)
	if err != nil {
		<-p.slots
		return err
	}
	if err := s.publish(ctx, m, p.cfg.PublishTimeout); err != nil {
		s.close()
		<-p.slots
		return err
	}
	p.mu.Lock()
	p.idle = append(p.idle, s)
	p.mu.Unlock()
	<-p.slots
	return nil
}

// get takes a live idle session or opens one.
func (p *Pool) get(ctx context.Context) (*session, error) {
	for {
		p.mu.Lock()
		n := len(p.idle)
		if n == 0 {
			p.mu.Unlock()
			break
		}
		s := p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		if s.alive() {
			return s, nil
		}
		s.close()
	}
	conn, err := Dial(ctx, p.cfg)
	if err != nil {
		return nil, err
	}
	ch, err := conn.Channel()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("opening a channel on %s: %w", p.cfg.URL(), err)
	}
	if err := ch.Confirm(false); err != nil {
		conn.Close()
		return nil, fmt.Errorf("enabling publisher confirms on %s: %w", p.cfg.URL(), err)
	}
	s := &session{conn: conn, ch: ch, returns: ch.NotifyReturn(make(chan amqp.Return, 1))}
	return s, nil
}

func (s *session) publish(ctx context.Context, m Message, timeout time.Duration) error {
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	dc, err := s.ch.PublishWithDeferredConfirmWithContext(pctx, m.Exchange, m.RoutingKey, m.Mandatory, m.Immediate, m.Publishing)
	if err != nil {
		return fmt.Errorf("publishing to %q: %w", m.RoutingKey, err)
	}
	ok, err := dc.WaitContext(pctx)
	if err != nil {
		return fmt.Errorf("waiting for the broker to confirm the publish to %q: %w", m.RoutingKey, err)
	}
	// The broker sends basic.return before the ack of a returned message,
	// and the library hands it to the buffered channel before it reads
	// the ack.
	select {
	case r := <-s.returns:
		return fmt.Errorf("the broker returned the message to %q: %d %s", m.RoutingKey, r.ReplyCode, r.ReplyText)
	default:
	}
	if !ok {
		return fmt.Errorf("the broker refused (nack) the message to %q", m.RoutingKey)
	}
	return nil
}

// Close closes the idle connections.
func (p *Pool) Close() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, s := range idle {
		s.close()
	}
}

// Pools are the connection pools of one runtime, by connection
// parameters.
type Pools struct {
	mu sync.Mutex
	m  map[Conn]*Pool
}

// Get returns the pool of c, made on first use.
func (ps *Pools) Get(c Conn) *Pool {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.m == nil {
		ps.m = map[Conn]*Pool{}
	}
	p, ok := ps.m[c]
	if !ok {
		p = newPool(c)
		ps.m[c] = p
	}
	return p
}

// Close closes every pool's idle connections.
func (ps *Pools) Close() error {
	ps.mu.Lock()
	m := ps.m
	ps.m = nil
	ps.mu.Unlock()
	for _, p := range m {
		p.Close()
	}
	return nil
}
