package queue

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/logrecord"
	"github.com/kumogo/kumogo/internal/message"
)

// readyQueue holds due messages for one egress path (source, site) and
// runs the dispatchers that deliver them.
type readyQueue struct {
	m    *Manager
	name string
	site string

	mu     sync.Mutex
	path   config.EgressPath
	src    config.EgressSource
	route  Route
	pool   string
	loaded time.Time
	items  []*entry
	head   int
	conns  int
	notify chan struct{}
}

func newReadyQueue(m *Manager, name, site string, path config.EgressPath, src config.EgressSource, route Route, pool string) *readyQueue {
	return &readyQueue{m: m, name: name, site: site, path: path, src: src, route: route, pool: pool,
		loaded: time.Now(), notify: make(chan struct{}, 64)}
}

// update refreshes the egress path settings (called with m.mu held).
func (rq *readyQueue) update(path config.EgressPath, src config.EgressSource, route Route, pool string) {
	rq.mu.Lock()
	rq.path, rq.src, rq.route, rq.pool, rq.loaded = path, src, route, pool, time.Now()
	rq.mu.Unlock()
}

// Dispatchers returns KumoMTA's dispatcher count for a ready queue of n
// messages: ceil(limit × (1 − e^(−0.023 n))), at most n.
func Dispatchers(limit, n int) int {
	if n <= 0 || limit <= 0 {
		return 0
	}
	d := int(math.Ceil(float64(limit) * (1 - math.Exp(-0.023*float64(n)))))
	if d > n {
		d = n
	}
	if d > limit {
		d = limit
	}
	if d < 1 {
		d = 1
	}
	return d
}

func (rq *readyQueue) push(e *entry) {
	rq.mu.Lock()
	rq.items = append(rq.items, e)
	n := len(rq.items) - rq.head
	spawn := rq.conns < Dispatchers(rq.path.ConnectionLimit, n)
	if spawn {
		rq.conns++
	}
	rq.mu.Unlock()
	if spawn {
		rq.m.wg.Add(1)
		go rq.dispatch()
		return
	}
	select {
	case rq.notify <- struct{}{}:
	default:
	}
}

// Len is the number of messages waiting in the ready queue.
func (rq *readyQueue) Len() int {
	rq.mu.Lock()
	defer rq.mu.Unlock()
	return len(rq.items) - rq.head
}

// pop takes the next message. With wait > 0 it waits that long for one to
// arrive; nil means none came.
func (rq *readyQueue) pop(ctx context.Context, wait time.Duration) *entry {
	var timer *time.Timer
	for {
		rq.mu.Lock()
		if rq.head < len(rq.items) {
			e := rq.items[rq.head]
			rq.items[rq.head] = nil
			rq.head++
			if rq.head == len(rq.items) {
				rq.items, rq.head = rq.items[:0], 0
			} else if rq.head > 1024 && rq.head*2 > len(rq.items) {
				rq.items = append([]*entry(nil), rq.items[rq.head:]...)
				rq.head = 0
			}
			rq.mu.Unlock()
			if timer != nil {
				timer.Stop()
			}
			return e
		}
		rq.mu.Unlock()
		if wait <= 0 {
			return nil
		}
		if timer == nil {
			timer = time.NewTimer(wait)
		}
		select {
		case <-rq.notify:
		case <-timer.C:
			return nil
		case <-ctx.Done():
			timer.Stop()
			return nil
		}
	}
}

func (rq *readyQueue) settings() (config.EgressPath, config.EgressSource, Route) {
	rq.mu.Lock()
	defer rq.mu.Unlock()
	return rq.path, rq.src, rq.route
}

// dispatch is one dispatcher: a connection that delivers messages until the
// queue stays empty for idle_timeout.
func (rq *readyQueue) dispatch() {
	m := rq.m
	defer m.wg.Done()
	defer func() {
		rq.mu.Lock()
		rq.conns--
		rq.mu.Unlock()
	}()
	ctx := m.ctx
	var conn Conn
	delivered := 0
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	for {
		path, src, route := rq.settings()
		wait := time.Duration(0)
		if conn != nil && conn.Usable() {
			wait = path.IdleTimeout
		}
		e := rq.pop(ctx, wait)
		if e == nil {
			return
		}
		if ctx.Err() != nil {
			return // shutting down: the message stays in the spool
		}
		if conn != nil && (!conn.Usable() || (path.MaxDeliveriesPerConnection > 0 && delivered >= path.MaxDeliveriesPerConnection)) {
			conn.Close()
			conn, delivered = nil, 0
		}
		if conn == nil {
			c, err := m.o.Connector.Connect(ctx, route, &path, &src)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				resp := Response{Code: 400, Content: "KumoMTA internal: failed to connect to any candidate hosts: " + err.Error()}
				var re *ResponseError
				if errors.As(err, &re) {
					resp = re.Response
				}
				m.outcome(e, rq, nil, resp, e.msg.Recipients())
				return
			}
			conn = c
		}
		results, err := conn.Send(ctx, e.msg)
		delivered++
		if ctx.Err() != nil {
			return
		}
		info := conn.Info()
		if err != nil && len(results) == 0 {
			results = make([]RcptResponse, len(e.msg.Recipients()))
			for i, r := range e.msg.Recipients() {
				results[i] = RcptResponse{Recipient: r, Response: Response{Code: 400, Content: "KumoMTA internal: failed to send message: " + err.Error()}}
			}
		}
		rq.handle(e, &info, results)
	}
}

// outcome applies one response to the given recipients of e.
func (m *Manager) outcome(e *entry, rq *readyQueue, info *ConnInfo, resp Response, rcpts []message.Address) {
	m.mu.Lock()
	sq := m.sched[e.queue]
	m.mu.Unlock()
	switch classify(resp) {
	case logrecord.Delivery:
		m.finish(e, sq, rq, info, logrecord.Delivery, resp, rcpts)
	case logrecord.Bounce:
		m.finish(e, sq, rq, info, logrecord.Bounce, resp, rcpts)
	default:
		keep := e.msg.Recipients()
		e.msg.SetRecipients(rcpts)
		m.transientWithInfo(e, sq, rq, info, resp)
		_ = keep
	}
}

// classify maps a response to Delivery, TransientFailure or Bounce (§5.5).
func classify(r Response) logrecord.Type {
	switch {
	case r.Code >= 200 && r.Code < 300:
		return logrecord.Delivery
	case r.Code == 503 || strings.Contains(strings.ToLower(r.Content), "too many recipients"):
		return logrecord.TransientFailure
	case r.Code >= 500:
		return logrecord.Bounce
	default:
		return logrecord.TransientFailure
	}
}

// handle groups per-recipient results by identical response and records
// them; recipients with transient failures are retried together.
func (rq *readyQueue) handle(e *entry, info *ConnInfo, results []RcptResponse) {
	m := rq.m
	type group struct {
		resp  Response
		rcpts []message.Address
	}
	var groups []group
	for _, r := range results {
		found := false
		for i := range groups {
			if groups[i].resp == r.Response || (groups[i].resp.Code == r.Response.Code && groups[i].resp.Content == r.Response.Content && groups[i].resp.Command == r.Response.Command && sameEnhanced(groups[i].resp.Enhanced, r.Response.Enhanced)) {
				groups[i].rcpts = append(groups[i].rcpts, r.Recipient)
				found = true
				break
			}
		}
		if !found {
			groups = append(groups, group{resp: r.Response, rcpts: []message.Address{r.Recipient}})
		}
	}
	m.mu.Lock()
	sq := m.sched[e.queue]
	m.mu.Unlock()
	var retry []message.Address
	var retryResp *Response
	for _, g := range groups {
		switch classify(g.resp) {
		case logrecord.TransientFailure:
			retry = append(retry, g.rcpts...)
			r := g.resp
			retryResp = &r
		default:
			m.finish(e, sq, rq, info, classify(g.resp), g.resp, g.rcpts)
		}
	}
	if len(retry) > 0 {
		e.msg.SetRecipients(retry)
		m.transientWithInfo(e, sq, rq, info, *retryResp)
	}
}

func sameEnhanced(a, b *logrecord.EnhancedCode) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

var _ = fmt.Sprintf
