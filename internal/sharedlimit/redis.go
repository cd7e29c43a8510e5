package sharedlimit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/kumogo/kumogo/internal/throttle"
)

// RedisConfig holds the parameters of kumo.configure_redis_throttles,
// which are those of KumoMTA's redis.open page.
type RedisConfig struct {
	// Nodes are redis:// URLs; more than one means a cluster.
	Nodes []string
	// Cluster forces a cluster client for a single node.
	Cluster          bool
	PoolSize         int // spare connections kept; 0 = go-redis default
	ReadFromReplicas bool
	Username         string
	Password         string
	ConnectTimeout   time.Duration // 0 = 30 s (KumoMTA's default)
	WaitTimeout      time.Duration // waiting for a pooled connection; 0 = 30 s
	ResponseTimeout  time.Duration // 0 = 1 s: a stalled Redis must not stall delivery
	// LeaseTTL is how long a connection lease whose Limit has no TTL
	// outlives its holder's last renewal; 0 = DefaultLeaseTTL. A node
	// killed outright releases its leases within their TTL.
	LeaseTTL time.Duration
}

// DefaultLeaseTTL is the lifetime of a shared connection lease that is not
// renewed, when its Limit gives none. Holders renew each lease every
// third of its TTL.
const DefaultLeaseTTL = 10 * time.Second

// minRenewTick bounds how often the renewal loop runs.
const minRenewTick = 100 * time.Millisecond

// retryDown is how long Redis is left alone after a failed call before
// the next call tries it again.
const retryDown = time.Second

// Redis keeps throttles and connection leases in a Redis server.
type Redis struct {
	client   redis.UniversalClient
	leaseTTL time.Duration
	node     string // lease id prefix, unique per process
	seq      atomic.Uint64

	// downUntil is the unix ns until which calls go local without trying
	// Redis; degraded is set between a failure and the next success.
	downUntil atomic.Int64
	degraded  atomic.Bool
	lastWarn  atomic.Int64
	skipped   atomic.Int64

	mu     sync.Mutex
	live   map[*Lease]struct{}
	wake   chan struct{} // a lease was taken
	stop   chan struct{}
	done   chan struct{}
	logger func(ok bool, msg string, err error, skipped int64)
}

// gcraScript is the generic cell rate algorithm kept in Redis: the key
// holds the theoretical arrival time (TAT) in microseconds of Redis's own
// clock, so that nodes with skewed clocks still share one rate. ARGV: the
// emission interval and the burst tolerance, both in microseconds.
// Returns {throttled, remaining, retry_after_us, reset_after_us}.
var gcraScript = redis.NewScript(`
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - tolerance
if now < allow_at then
  return {1, 0, allow_at - now, tat - now}
end
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {0, math.floor((now - allow_at) / interval), 0, new_tat - now}
`)

// acquireScript takes a slot of a connection limit: KEYS[1] is a sorted
// set of lease ids scored by their expiry (ms of Redis's clock); expired
// ones are dropped first. ARGV: limit, lease id, ttl ms. Returns the
// number of leases held after taking one, or 0 when all were taken (so
// that a caller that took the last slot knows without asking again).
var acquireScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local n = redis.call('ZCARD', KEYS[1])
if n < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ttl)
  return n + 1
end
return 0
`)

// renewScript pushes a live lease's expiry forward (and puts it back if
// Redis lost it, say after a restart without persistence: the connection
// it stands for is still open). ARGV: lease id, ttl ms.
var renewScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ttl)
return 1
`)

func throttleKey(name string) string { return "kumogo:throttle:" + name }
func limitKey(name string) string    { return "kumogo:limit:" + name }

// ConfigureRedis makes the store share its limits through Redis. A
// malformed node URL is an error; a server that does not answer yet is
// not (a node restarted during a Redis outage must still deliver): the
// outage is logged and limits stay local until Redis answers.
func (s *Store) ConfigureRedis(ctx context.Context, cfg RedisConfig) error {
	client, err := newClient(cfg)
	if err != nil {
		return err
	}
	id := make([]byte, 8)
	_, _ = rand.Read(id)
	r := &Redis{
		client: client, leaseTTL: cfg.LeaseTTL, node: hex.EncodeToString(id),
		live: make(map[*Lease]struct{}), wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
	}
	if r.leaseTTL <= 0 {
		r.leaseTTL = DefaultLeaseTTL
	}
	r.logger = func(ok bool, msg string, err error, skipped int64) {
		if ok {
			s.log.Info().Msg(msg)
			return
		}
		s.log.Warn().Err(err).Int64("failed_since_last_warning", skipped).Msg(msg)
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := client.Ping(pctx).Err(); err != nil {
		r.failed(fmt.Errorf("%s: %w", cfg.Nodes[0], err))
	} else {
		for _, sc := range []*redis.Script{gcraScript, acquireScript, renewScript} {
			if err := sc.Load(pctx, client).Err(); err != nil {
				client.Close()
				return fmt.Errorf("configure_redis_throttles: loading a script: %w", err)
			}
		}
	}
	go r.renewLoop()
	if old := s.redis.Swap(r); old != nil {
		old.close()
	}
	s.log.Info().Str("node", cfg.Nodes[0]).Msg("throttles and connection limits are shared through redis")
	return nil
}

func newClient(cfg RedisConfig) (redis.UniversalClient, error) {
	if len(cfg.Nodes) == 0 {
		return nil, errors.New("configure_redis_throttles: node is required")
	}
	connect := cfg.ConnectTimeout
	if connect <= 0 {
		connect = 30 * time.Second
	}
	wait := cfg.WaitTimeout
	if wait <= 0 {
		wait = 30 * time.Second
	}
	resp := cfg.ResponseTimeout
	if resp <= 0 {
		resp = time.Second
	}
	if len(cfg.Nodes) == 1 && !cfg.Cluster {
		o, err := redis.ParseURL(cfg.Nodes[0])
		if err != nil {
			return nil, fmt.Errorf("configure_redis_throttles: node %q: %w", cfg.Nodes[0], err)
		}
		// A dial to a stopped server fails at once; a dial that hangs is
		// bounded by the response timeout rather than connect_timeout, so
		// that an outage costs each delivery at most that much.
		o.DialTimeout = min(connect, resp)
		o.ReadTimeout, o.WriteTimeout, o.PoolTimeout = resp, resp, wait
		o.MaxRetries = -1
		// one dial per attempt: go-redis's default of 5 dials 100 ms
		// apart would stall the delivery that first meets an outage
		o.DialerRetries = 1
		if cfg.PoolSize > 0 {
			o.MaxIdleConns = cfg.PoolSize
		}
		return redis.NewClient(o), nil
	}
	co := &redis.ClusterOptions{
		Username: cfg.Username, Password: cfg.Password, ReadOnly: cfg.ReadFromReplicas,
		DialTimeout: min(connect, resp), ReadTimeout: resp, WriteTimeout: resp, PoolTimeout: wait,
		MaxRetries: -1, MaxIdleConns: cfg.PoolSize, DialerRetries: 1,
	}
	for _, n := range cfg.Nodes {
		o, err := redis.ParseURL(n)
		if err != nil {
			return nil, fmt.Errorf("configure_redis_throttles: node %q: %w", n, err)
		}
		co.Addrs = append(co.Addrs, o.Addr)
		if co.Password == "" {
			co.Username, co.Password = o.Username, o.Password
		}
	}
	return redis.NewClusterClient(co), nil
}

// available reports whether Redis should be tried now.
func (r *Redis) available() bool {
	return time.Now().UnixNano() >= r.downUntil.Load()
}

// failed notes a failed call: Redis is left alone for retryDown and the
// outage is logged, at most once per 10 s with the count of failures in
// between.
func (r *Redis) failed(err error) {
	r.downUntil.Store(time.Now().Add(retryDown).UnixNano())
	r.degraded.Store(true)
	now := time.Now().UnixNano()
	last := r.lastWarn.Load()
	if now-last < int64(10*time.Second) || !r.lastWarn.CompareAndSwap(last, now) {
		r.skipped.Add(1)
		return
	}
	r.logger(false, "redis shared throttles unavailable; delivery goes on with local limits until redis answers again", err, r.skipped.Swap(0))
}

// succeeded notes a successful call, logging the end of an outage.
func (r *Redis) succeeded() {
	if r.degraded.CompareAndSwap(true, false) {
		r.logger(true, "redis shared throttles reachable again; limits are shared through redis again", nil, 0)
	}
}

// throttle runs the GCRA script; ok is false when Redis did not answer.
func (r *Redis) throttle(ctx context.Context, name string, spec throttle.Spec) (throttle.Result, bool) {
	if !r.available() {
		return throttle.Result{}, false
	}
	iv := max(spec.Interval()/time.Microsecond, 1)
	burst := spec.Burst()
	if burst == 0 {
		burst = 1
	}
	v, err := gcraScript.Run(ctx, r.client, []string{throttleKey(name)}, int64(iv), int64(iv)*int64(burst)).Int64Slice()
	if err != nil || len(v) != 4 {
		if err == nil {
			err = fmt.Errorf("unexpected reply %v", v)
		}
		if ctx.Err() == nil {
			r.failed(err)
		}
		return throttle.Result{}, false
	}
	r.succeeded()
	return throttle.Result{
		Throttled:  v[0] == 1,
		Limit:      burst,
		Remaining:  uint64(max(v[1], 0)),
		RetryAfter: time.Duration(v[2]) * time.Microsecond,
		ResetAfter: time.Duration(v[3]) * time.Microsecond,
	}, true
}

// acquire takes a shared lease lasting ttl (the default when 0); held is
// the number of leases of name held afterwards (limit when none was
// free, and then lease is nil). err != nil means Redis did not answer
// and the caller should fall back to a local one.
func (r *Redis) acquire(ctx context.Context, s *Store, name string, limit int, ttl time.Duration) (lease *Lease, held int, err error) {
	if !r.available() {
		return nil, 0, errors.New("redis unavailable")
	}
	if ttl <= 0 {
		ttl = r.leaseTTL
	}
	id := fmt.Sprintf("%s-%d", r.node, r.seq.Add(1))
	n, err := acquireScript.Run(ctx, r.client, []string{limitKey(name)}, limit, id, ttl.Milliseconds()).Int64()
	if err != nil {
		if ctx.Err() == nil {
			r.failed(err)
		}
		return nil, 0, err
	}
	r.succeeded()
	if n < 1 {
		return nil, limit, nil
	}
	l := &Lease{s: s, name: name, remote: r, ttl: ttl, id: id}
	r.mu.Lock()
	r.live[l] = struct{}{}
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}: // a shorter TTL than the loop's tick
	default:
	}
	return l, int(n), nil
}

// release drops a shared lease. When Redis does not answer the lease
// simply expires after the lease TTL.
func (r *Redis) release(l *Lease) {
	r.mu.Lock()
	delete(r.live, l)
	r.mu.Unlock()
	if !r.available() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := r.client.ZRem(ctx, limitKey(l.name), l.id).Err(); err != nil {
		r.failed(err)
	}
}

// renewLoop pushes the expiry of every live lease forward, in one
// pipeline, every third of the shortest TTL among them.
func (r *Redis) renewLoop() {
	defer close(r.done)
	tick := r.leaseTTL / 3
	timer := time.NewTimer(tick)
	defer timer.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-r.wake:
			// a new lease: its TTL may call for a shorter tick
			r.mu.Lock()
			shortest := r.shortestTTL()
			r.mu.Unlock()
			if shortest/3 >= tick {
				continue
			}
		case <-timer.C:
		}
		r.mu.Lock()
		leases := make([]*Lease, 0, len(r.live))
		for l := range r.live {
			leases = append(leases, l)
		}
		shortest := r.shortestTTL()
		r.mu.Unlock()
		tick = max(shortest/3, minRenewTick)
		timer.Reset(tick)
		if len(leases) == 0 {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), tick)
		pipe := r.client.Pipeline()
		for _, l := range leases {
			// Eval, not EvalSha: a restarted Redis has lost its script cache
			renewScript.Eval(ctx, pipe, []string{limitKey(l.name)}, l.id, l.ttl.Milliseconds())
		}
		_, err := pipe.Exec(ctx)
		cancel()
		if err != nil {
			r.failed(err)
		} else {
			r.succeeded()
		}
	}
}

// shortestTTL is the shortest TTL of the live leases, and at most the
// default TTL: long leases (KumoMTA's default timeouts add up to about
// half an hour) are still renewed every few seconds, so that a Redis
// restarted without persistence gets them back soon. r.mu is held.
func (r *Redis) shortestTTL() time.Duration {
	d := r.leaseTTL
	for l := range r.live {
		d = min(d, l.ttl)
	}
	return d
}

// HeldShared is the number of shared leases this process holds.
func (s *Store) HeldShared() int {
	r := s.redis.Load()
	if r == nil {
		return 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.live)
}

func (r *Redis) close() {
	close(r.stop)
	<-r.done
	r.client.Close()
}
