// Package sharedlimit holds the named throttles (GCRA rates) and
// connection limits of one kumogo process: kumo.make_throttle, the
// egress path's max_message_rate, max_connection_rate,
// additional_message_rate_throttles, source selection rates,
// connection_limit and additional_connection_limits, and the scheduled
// queue's max_message_rate.
//
// By default every limit is local to the process. After ConfigureRedis
// (kumo.configure_redis_throttles) limits whose spec lacks the "local:"
// prefix are kept in Redis so that every node sharing that Redis shares
// one rate and one connection budget (KumoMTA's configure_redis_throttles
// page). When Redis cannot be reached, limits fall back to the local
// state, the log says so, and sharing resumes by itself once Redis
// answers again.
package sharedlimit

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/kumogo/kumogo/internal/throttle"
)

// Store is one process's set of named throttles and connection limits.
// The zero value is not usable; use New.
type Store struct {
	log zerolog.Logger

	mu        sync.Mutex
	throttles map[localKey]*throttle.Limiter
	leases    map[string]int // local leases held, by limit name
	// gates coordinate the waiters of each limit (wait.go); an entry
	// lives while someone waits on it
	gates map[string]*gate
	// poll is how long a full limit is left alone (pollInterval; tests
	// lengthen it to see that a release wakes a waiter)
	poll func() time.Duration

	redis atomic.Pointer[Redis]
}

// New returns a Store with local limits only.
func New(log zerolog.Logger) *Store {
	return &Store{log: log, throttles: make(map[localKey]*throttle.Limiter), leases: make(map[string]int), gates: make(map[string]*gate), poll: pollInterval}
}

// Shared reports whether limits are currently configured to be shared
// through Redis.
func (s *Store) Shared() bool { return s.redis.Load() != nil }

// Close stops the Redis connection, if any (leases held in Redis are
// released by their holders or expire).
func (s *Store) Close() {
	if r := s.redis.Swap(nil); r != nil {
		r.close()
	}
}

// local returns the process-local limiter for name and spec. Throttles of
// the same name and spec share one bucket (KumoMTA's make_throttle page:
// the name defines the throttle).
func (s *Store) local(name string, spec throttle.Spec) *throttle.Limiter {
	key := localKey{name, spec}
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.throttles[key]
	if !ok {
		l = throttle.NewLimiter(spec)
		s.throttles[key] = l
	}
	return l
}

// localKey identifies a local bucket: its name and spec.
type localKey struct {
	name string
	spec throttle.Spec
}

// Throttle checks one event against the named throttle and counts it when
// it conforms. It never fails: when the shared state cannot be reached the
// local bucket answers.
func (s *Store) Throttle(ctx context.Context, name string, spec throttle.Spec) throttle.Result {
	if !spec.Local {
		if r := s.redis.Load(); r != nil {
			if res, ok := r.throttle(ctx, name, spec); ok {
				return res
			}
		}
	}
	return s.local(name, spec).AllowAt(time.Now())
}

// Wait takes one event from the named throttle, sleeping until it
// conforms. It reports whether it had to wait, and false in ok when ctx
// ended first.
func (s *Store) Wait(ctx context.Context, name string, spec throttle.Spec) (waited, ok bool) {
	for {
		res := s.Throttle(ctx, name, spec)
		if !res.Throttled {
			return waited, true
		}
		waited = true
		d := max(res.RetryAfter, time.Millisecond)
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return waited, false
		}
	}
}

// Lease is one slot of a connection limit, held until Release.
type Lease struct {
	s      *Store
	name   string
	remote *Redis        // nil for a local lease
	ttl    time.Duration // of a remote lease
	id     string
	done   atomic.Bool
}

// Release gives the slot back. It is safe to call more than once.
func (l *Lease) Release() {
	if l == nil || !l.done.CompareAndSwap(false, true) {
		return
	}
	if l.remote != nil {
		l.remote.release(l)
		l.s.freed(l.name)
		return
	}
	l.s.mu.Lock()
	if l.s.leases[l.name]--; l.s.leases[l.name] <= 0 {
		delete(l.s.leases, l.name)
	}
	l.s.mu.Unlock()
	l.s.freed(l.name)
}

// TryAcquire takes one slot of the named limit of size limit, or returns
// false when all are taken. local keeps the limit in this process even
// when limits are shared (the "local:" prefix of connection_limit). A
// shared lease lasts the store's default lease TTL; see Acquire.
func (s *Store) TryAcquire(ctx context.Context, name string, limit int, local bool) (*Lease, bool) {
	return s.Acquire(ctx, Limit{Name: name, Limit: limit, Local: local})
}

// Acquire takes one slot of l, or returns false when all are taken. A
// shared slot expires l.TTL after its holder last renewed it (the
// store's default when 0), which is how long a node that dies keeps it.
func (s *Store) Acquire(ctx context.Context, l Limit) (*Lease, bool) {
	lease, _ := s.acquire(ctx, l)
	return lease, lease != nil
}

// acquire is Acquire; full reports that no slot was left afterwards
// (the one taken was the last, or none was free).
func (s *Store) acquire(ctx context.Context, l Limit) (lease *Lease, full bool) {
	if l.Limit <= 0 {
		return nil, true
	}
	if !l.Local {
		if r := s.redis.Load(); r != nil {
			if lease, held, err := r.acquire(ctx, s, l.Name, l.Limit, l.TTL); err == nil {
				return lease, held >= l.Limit
			}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.leases[l.Name] >= l.Limit {
		return nil, true
	}
	s.leases[l.Name]++
	return &Lease{s: s, name: l.Name}, s.leases[l.Name] >= l.Limit
}

// LocalLeases is the number of local leases held under name (for tests
// and introspection).
func (s *Store) LocalLeases(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.leases[name]
}

// Limit is one named connection limit.
type Limit struct {
	Name  string
	Limit int
	Local bool
	// TTL is how long a shared lease outlives its holder's last renewal
	// (0: the store's default). KumoMTA's ready queue leases a
	// connection slot for the egress path's whole connection lifetime
	// (the sum of its timeouts); queue passes the same.
	TTL time.Duration
}

// AcquireAll takes one slot of each limit, smallest limit first (KumoMTA's
// additional_connection_limits page: that order avoids holding a slot of a
// large allocation only to trip over a small one). On failure the slots
// already taken are given back and the name of the full limit is returned.
func (s *Store) AcquireAll(ctx context.Context, limits []Limit) ([]*Lease, string, bool) {
	leases := make([]*Lease, 0, len(limits))
	for _, l := range limits {
		lease, ok := s.Acquire(ctx, l)
		if !ok {
			for _, held := range leases {
				held.Release()
			}
			return nil, l.Name, false
		}
		leases = append(leases, lease)
	}
	return leases, "", true
}

// Forget drops the local throttles whose name is in names and that are at
// rest (a full burst available again), so that the state of a queue that
// was reaped does not outlive it; a throttle still recovering from recent
// use is kept, and a name used again later simply starts afresh.
func (s *Store) Forget(names map[string]bool) {
	if len(names) == 0 {
		return
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, l := range s.throttles {
		if names[k.name] && l.Rested(now) {
			delete(s.throttles, k)
		}
	}
}

// LocalThrottles is the number of local throttles kept (for tests).
func (s *Store) LocalThrottles() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.throttles)
}
