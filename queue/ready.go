package queue

import (
	"context"
	"errors"
	"math"
	"sync"
	"time"

	"github.com/kumogo/kumogo/internal/adminapi"
	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/sharedlimit"
	"github.com/kumogo/kumogo/internal/smtpreply"
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
	epoch  uint64 // configuration epoch the path was evaluated in
	items  []*entry
	head   int
	conns  int
	notify chan struct{}
	// batch is the batch size of the connections (BatchConn), learnt
	// from the first one; it scales the dispatcher count down.
	batch int

	// states for ready-q-states (readystate.go), guarded by mu
	states map[string]adminapi.QueueState

	// rates and connection limits of the egress path (shaping.go)
	limits egressLimits

	// used is when a message was last pushed or a dispatcher last ended;
	// reaped is set once the reaper removed the queue from the Manager
	// (reap.go). Both guarded by mu.
	used   time.Time
	reaped bool

	// failures, for the resume after an outage (resume.go); guarded by mu
	resume resumeState
}

func newReadyQueue(m *Manager, name, site string, path config.EgressPath, src config.EgressSource, route Route, pool string, epoch uint64) *readyQueue {
	now := time.Now()
	rq := &readyQueue{m: m, name: name, site: site, loaded: now, used: now, notify: make(chan struct{}, 64)}
	rq.update(path, src, route, pool, epoch)
	return rq
}

// update refreshes the egress path settings, evaluated in config epoch
// epoch.
func (rq *readyQueue) update(path config.EgressPath, src config.EgressSource, route Route, pool string, epoch uint64) {
	rq.mu.Lock()
	rq.limits = newEgressLimits(rq.name, path)
	rq.path, rq.src, rq.route, rq.pool, rq.loaded, rq.epoch = path, src, route, pool, time.Now(), epoch
	rq.batch = routeBatch(route)
	rq.resume.on = routeResumes(route)
	rq.mu.Unlock()
}

// full reports whether the ready queue holds max_ready messages already.
func (rq *readyQueue) full() bool {
	rq.mu.Lock()
	defer rq.mu.Unlock()
	return rq.path.MaxReady > 0 && len(rq.items)-rq.head >= rq.path.MaxReady
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
	for rq.reaped {
		// reaped since the caller looked it up: the message goes to the
		// queue now registered under this name (this one, revived, when
		// there is none), never to a queue nobody serves or counts
		rq.mu.Unlock()
		rq = rq.m.revive(rq)
		rq.mu.Lock()
	}
	rq.used = time.Now()
	rq.items = append(rq.items, e)
	n := len(rq.items) - rq.head
	spawn := rq.conns < batchDispatchers(rq.path.ConnectionLimit, n, rq.batch)
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

func (rq *readyQueue) settings() (config.EgressPath, config.EgressSource, Route, egressLimits) {
	rq.mu.Lock()
	defer rq.mu.Unlock()
	return rq.path, rq.src, rq.route, rq.limits
}

// dispatch is one dispatcher: a connection that delivers messages until the
// queue stays empty for idle_timeout.
func (rq *readyQueue) dispatch() {
	m := rq.m
	defer m.wg.Done()
	defer func() {
		// A message pushed while this dispatcher was giving up (its idle
		// timer fired as the push looked at the dispatcher count) would
		// otherwise wait for the next push: hand it to a new dispatcher.
		rq.mu.Lock()
		rq.conns--
		rq.used = time.Now()
		n := len(rq.items) - rq.head
		respawn := n > 0 && m.ctx.Err() == nil && rq.conns < batchDispatchers(rq.path.ConnectionLimit, n, rq.batch)
		if respawn {
			rq.conns++
			m.wg.Add(1)
		}
		rq.mu.Unlock()
		if respawn {
			go rq.dispatch()
		}
	}()
	ctx := m.ctx
	var conn Conn
	var leases []*sharedlimit.Lease // connection limit slots held for conn
	delivered := 0
	ok := false
	closeConn := func() {
		if conn != nil {
			conn.Close()
		}
		for _, l := range leases {
			l.Release()
		}
		conn, leases, delivered = nil, nil, 0
	}
	defer closeConn()
	for {
		path, src, route, limits := rq.settings()
		if conn != nil && (!conn.Usable() || (path.MaxDeliveriesPerConnection > 0 && delivered >= path.MaxDeliveriesPerConnection)) {
			closeConn()
		}
		if leases == nil {
			// The connection limits are taken before a message is taken,
			// so that a dispatcher waiting for a slot holds no message
			// that an open connection could deliver meanwhile.
			if rq.Len() == 0 {
				return
			}
			if leases, ok = m.acquireConnLeases(ctx, limits.conns); !ok {
				return
			}
		}
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
		if m.adminIntercept(e, rq.name) || m.readySuspended(rq, e) || m.sourceSuspended(rq, e) {
			continue // bounced, or held by a suspension (admin.go, sourcehealth.go)
		}
		// message rates before connecting, so that a long wait never
		// holds an idle connection open
		delay, ok := m.takeMessageRates(ctx, limits.msgRates, path.IdleTimeout)
		if !ok {
			return
		}
		if delay > 0 {
			m.undefer(ctx, e.msg)
			m.schedule(e, time.Now().Add(delay))
			continue
		}
		if conn == nil {
			if !rq.waitConnRate(ctx, limits.connRate) {
				return
			}
			c, err := m.o.Connector.Connect(ctx, route, &path, &src)
			if err != nil {
				closeConn()
				if ctx.Err() != nil {
					return
				}
				m.sourceConnectFailed(&src, err)
				resp := smtpreply.Response{Code: 400, Content: "KumoMTA internal: failed to connect to any candidate hosts: " + err.Error()}
				var re *smtpreply.Error
				if errors.As(err, &re) {
					resp = re.Response
				}
				m.outcome(e, rq, nil, resp, e.msg.Recipients())
				return
			}
			conn = c
		}
		if bc, ok := conn.(BatchConn); ok {
			if size, minSize, latency := bc.Batching(); size > 1 {
				rq.setBatch(size)
				batch := rq.gather(ctx, e, size, minSize, latency)
				rq.sendBatch(ctx, bc, batch)
				delivered += len(batch)
				if ctx.Err() != nil {
					return
				}
				continue
			}
		}
		results := rq.send(ctx, conn, e, path.MaxRecipientsPerBatch)
		delivered++
		if ctx.Err() != nil {
			return
		}
		info := conn.Info()
		rq.handle(e, &info, results)
		if !conn.Usable() && path.ReconnectStrategy == "TerminateSession" {
			return
		}
	}
}

// setBatch records the batch size of the queue's connections.
func (rq *readyQueue) setBatch(size int) {
	rq.mu.Lock()
	rq.batch = size
	rq.mu.Unlock()
}

// send delivers e on conn, in batches of at most maxRcpts recipients
// (max_recipients_per_batch), and returns one response per recipient.
func (rq *readyQueue) send(ctx context.Context, conn Conn, e *entry, maxRcpts int) []RcptResponse {
	all := e.msg.Recipients()
	if maxRcpts <= 0 {
		maxRcpts = len(all)
	}
	var results []RcptResponse
	for start := 0; start < len(all); start += maxRcpts {
		chunk := all[start:min(start+maxRcpts, len(all))]
		e.msg.SetRecipients(chunk)
		var res []RcptResponse
		var err error
		if conn.Usable() {
			res, err = conn.Send(ctx, e.msg)
		} else {
			err = errors.New("connection closed by the peer")
		}
		if len(res) == 0 {
			msg := "connection unusable"
			if err != nil {
				msg = err.Error()
			}
			for _, r := range chunk {
				res = append(res, RcptResponse{Recipient: r, Response: smtpreply.Response{Code: 400, Content: "KumoMTA internal: failed to send message: " + msg}})
			}
		}
		results = append(results, res...)
	}
	e.msg.SetRecipients(all)
	return results
}
