package mx

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// udpPool keeps connected UDP sockets to each name server between queries.
// miekg/dns's Client.Exchange makes a socket per query (socket, connect,
// write, read, close, and the poller registration that goes with them):
// with thousands of new destinations that was a quarter of the daemon's
// CPU. A socket is lent to one query at a time, so an answer is matched to
// its query by the socket, the random ID (answers with another ID, late
// answers to a query that timed out, are skipped by ExchangeWithConn) and
// the question, which exchange checks.
//
// Reuse gives up the fresh source port of every query, one of the
// defences against forged answers (RFC 5452). Each socket
// therefore answers at most maxUses queries and is kept at most maxAge, so
// the port still changes often; a socket whose query failed is closed, not
// reused.
type udpPool struct {
	client  *dns.Client
	maxIdle int // idle sockets kept per server
	maxUses int
	maxAge  time.Duration
	now     func() time.Time

	mu     sync.Mutex
	idle   map[string][]*pooledConn
	closed bool
}

type pooledConn struct {
	*dns.Conn
	uses    int
	created time.Time
}

const (
	poolMaxIdle = 32
	poolMaxUses = 100
	poolMaxAge  = 30 * time.Second
)

func newUDPPool(client *dns.Client) *udpPool {
	return &udpPool{
		client:  client,
		maxIdle: poolMaxIdle,
		maxUses: poolMaxUses,
		maxAge:  poolMaxAge,
		now:     time.Now, // the sockets' age is real time, whatever the cache's clock
		idle:    make(map[string][]*pooledConn),
	}
}

// get returns an idle socket to srv, or a new one.
func (p *udpPool) get(ctx context.Context, srv string) (*pooledConn, error) {
	p.mu.Lock()
	for l := p.idle[srv]; len(l) > 0; l = p.idle[srv] {
		c := l[len(l)-1]
		p.idle[srv] = l[:len(l)-1]
		if p.now().Sub(c.created) < p.maxAge {
			p.mu.Unlock()
			return c, nil
		}
		c.Close()
	}
	p.mu.Unlock()
	co, err := p.client.DialContext(ctx, srv)
	if err != nil {
		return nil, err
	}
	return &pooledConn{Conn: co, created: p.now()}, nil
}

// put gives c back after a query that succeeded; a socket past its use or
// age limit, or beyond the idle bound, is closed.
func (p *udpPool) put(srv string, c *pooledConn) {
	c.uses++
	p.mu.Lock()
	if p.closed || c.uses >= p.maxUses || p.now().Sub(c.created) >= p.maxAge || len(p.idle[srv]) >= p.maxIdle {
		p.mu.Unlock()
		c.Close()
		return
	}
	p.idle[srv] = append(p.idle[srv], c)
	p.mu.Unlock()
}

// close closes the idle sockets; sockets lent out are closed when they
// come back.
func (p *udpPool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for srv, l := range p.idle {
		for _, c := range l {
			c.Close()
		}
		delete(p.idle, srv)
	}
}

// idleCount is the number of idle sockets (tests).
func (p *udpPool) idleCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, l := range p.idle {
		n += len(l)
	}
	return n
}

var errQuestionMismatch = errors.New("answer is for another question")

// exchange sends m to srv over a pooled socket.
func (p *udpPool) exchange(ctx context.Context, m *dns.Msg, srv string) (*dns.Msg, error) {
	c, err := p.get(ctx, srv)
	if err != nil {
		return nil, err
	}
	resp, _, err := p.client.ExchangeWithConnContext(ctx, m, c.Conn)
	if err == nil && !sameQuestion(m, resp) {
		err = errQuestionMismatch
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	p.put(srv, c)
	return resp, nil
}

// sameQuestion reports whether resp answers the question of q (names
// compared without regard to case, as servers may change it).
func sameQuestion(q, resp *dns.Msg) bool {
	if len(q.Question) != len(resp.Question) {
		return false
	}
	for i, a := range q.Question {
		b := resp.Question[i]
		if a.Qtype != b.Qtype || a.Qclass != b.Qclass || !strings.EqualFold(a.Name, b.Name) {
			return false
		}
	}
	return true
}
