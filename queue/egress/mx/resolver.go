// Package mx resolves where mail for a routing domain goes, the way
// KumoMTA's mail exchanger does (KumoMTA docs: "kumo.dns.lookup_mx" and
// "Routing Messages via Custom MX Lists"): MX records grouped by
// preference with the implicit-MX fallback, null MX, domain literals,
// mx_list overrides, the factored site name that lets domains sharing MX
// hosts share a ready queue, and the ordered connection plan of
// (host, address, port) candidates with prohibited_hosts / skip_hosts
// filtering.
//
// The Resolver is a small stub resolver on github.com/miekg/dns: it asks
// the configured recursive name servers over UDP (EDNS0, 1232 bytes, on
// sockets kept for a while between queries, udppool.go) and retries over
// TCP when an answer is truncated. Answers are cached by TTL,
// NXDOMAIN and empty answers by the SOA minimum (negative caching), and
// concurrent lookups of one name share a single query. It never reads the
// machine's resolver configuration unless FromResolvConf is called.
package mx

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// ErrNXDOMAIN reports that a name does not exist. Errors returned for such
// names wrap it: test with errors.Is.
var ErrNXDOMAIN = errors.New("NXDOMAIN")

// Options tune a Resolver. The zero value selects the defaults.
type Options struct {
	// Timeout bounds one query to one server (default 5 s).
	Timeout time.Duration
	// Attempts is how many rounds over the server list a query makes
	// before failing (default 2).
	Attempts int
	// NegativeTTL caches NXDOMAIN and empty answers when the response
	// carries no SOA record (default 5 min). A SOA in the authority section
	// gives min(SOA TTL, SOA minimum) instead, capped by NegativeTTL.
	NegativeTTL time.Duration
	// FailureTTL caches failures other than NXDOMAIN (SERVFAIL, REFUSED,
	// timeouts) so that a dead domain is not asked for on every message
	// (default 5 s; negative disables).
	FailureTTL time.Duration
	// MaxTTL caps positive TTLs (default 1 day). Answers with TTL 0 are
	// cached for MinTTL (default 1 s) so that one burst shares a query.
	MaxTTL time.Duration
	MinTTL time.Duration
	// CacheSize bounds the number of cached answers (default 65536).
	CacheSize int
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time
}

func (o *Options) fill() {
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	if o.Attempts <= 0 {
		o.Attempts = 2
	}
	if o.NegativeTTL <= 0 {
		o.NegativeTTL = 5 * time.Minute
	}
	if o.FailureTTL == 0 {
		o.FailureTTL = 5 * time.Second
	}
	if o.MaxTTL <= 0 {
		o.MaxTTL = 24 * time.Hour
	}
	if o.MinTTL <= 0 {
		o.MinTTL = time.Second
	}
	if o.CacheSize <= 0 {
		o.CacheSize = 65536
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Resolver looks up MX, A and AAAA records through recursive name servers.
// It is safe for concurrent use.
type Resolver struct {
	servers []string
	opts    Options
	udp     *udpPool
	tcp     *dns.Client

	mu       sync.Mutex
	cache    map[cacheKey]*cacheEntry
	inflight map[cacheKey]*call
}

type cacheKey struct {
	name  string // lower-case FQDN
	qtype uint16
}

type cacheEntry struct {
	expires time.Time
	val     any // *MXResult or []netip.Addr
	err     error
}

type call struct {
	done chan struct{}
	val  any
	err  error
}

// NewResolver returns a resolver asking servers ("ip" or "ip:port"; port
// 53 when absent) in order.
func NewResolver(servers []string, opts Options) (*Resolver, error) {
	if len(servers) == 0 {
		return nil, errors.New("mx: no name servers configured")
	}
	opts.fill()
	r := &Resolver{
		opts:     opts,
		udp:      newUDPPool(&dns.Client{Net: "udp", Timeout: opts.Timeout, UDPSize: 1232}),
		tcp:      &dns.Client{Net: "tcp", Timeout: opts.Timeout},
		cache:    make(map[cacheKey]*cacheEntry),
		inflight: make(map[cacheKey]*call),
	}
	for _, s := range servers {
		hp, err := normalizeServer(s)
		if err != nil {
			return nil, err
		}
		r.servers = append(r.servers, hp)
	}
	return r, nil
}

// FromResolvConf builds a resolver from a resolv.conf(5) file
// (conventionally /etc/resolv.conf): its nameserver lines, and its
// timeout and attempts options unless opts sets them.
func FromResolvConf(path string, opts Options) (*Resolver, error) {
	cc, err := dns.ClientConfigFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("mx: reading %s: %w", path, err)
	}
	if opts.Timeout <= 0 && cc.Timeout > 0 {
		opts.Timeout = time.Duration(cc.Timeout) * time.Second
	}
	if opts.Attempts <= 0 && cc.Attempts > 0 {
		opts.Attempts = cc.Attempts
	}
	var servers []string
	for _, s := range cc.Servers {
		servers = append(servers, net.JoinHostPort(s, cc.Port))
	}
	r, err := NewResolver(servers, opts)
	if err != nil {
		return nil, fmt.Errorf("mx: %s: %w", path, err)
	}
	return r, nil
}

// Servers returns the name servers as host:port.
func (r *Resolver) Servers() []string { return append([]string(nil), r.servers...) }

func normalizeServer(s string) (string, error) {
	s = strings.TrimSpace(s)
	if a, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
		return net.JoinHostPort(a.String(), "53"), nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return "", fmt.Errorf("mx: invalid name server %q: want ip or ip:port", s)
	}
	return ap.String(), nil
}

// Close closes the sockets kept for reuse. A resolver still works after
// Close, with a new socket for each query; call it when replacing one.
func (r *Resolver) Close() { r.udp.close() }

// FlushCache forgets every cached answer.
func (r *Resolver) FlushCache() {
	r.mu.Lock()
	clear(r.cache)
	r.mu.Unlock()
}

// cached runs fetch for key at most once per TTL, sharing concurrent
// callers. fetch returns the value, how long it may be cached and an error;
// errors are cached for the ttl fetch gives (0 = not cached).
func (r *Resolver) cached(ctx context.Context, key cacheKey, fetch func(context.Context) (any, time.Duration, error)) (any, error) {
	r.mu.Lock()
	if e, ok := r.cache[key]; ok {
		if r.opts.Now().Before(e.expires) {
			r.mu.Unlock()
			return e.val, e.err
		}
		delete(r.cache, key)
	}
	if c, ok := r.inflight[key]; ok {
		r.mu.Unlock()
		select {
		case <-c.done:
			return c.val, c.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	c := &call{done: make(chan struct{})}
	r.inflight[key] = c
	r.mu.Unlock()

	// The shared query runs detached from one caller's cancellation so that
	// a cancelled first caller does not fail the others; the per-query
	// timeouts bound it.
	val, ttl, err := fetch(context.WithoutCancel(ctx))
	c.val, c.err = val, err

	r.mu.Lock()
	delete(r.inflight, key)
	if ttl > 0 {
		r.store(key, &cacheEntry{expires: r.opts.Now().Add(ttl), val: val, err: err})
	}
	r.mu.Unlock()
	close(c.done)
	return val, err
}

// store adds e under r.mu, evicting expired entries (or, failing that,
// arbitrary ones) when the cache is full.
func (r *Resolver) store(key cacheKey, e *cacheEntry) {
	if len(r.cache) >= r.opts.CacheSize {
		now := r.opts.Now()
		for k, v := range r.cache {
			if !now.Before(v.expires) {
				delete(r.cache, k)
			}
		}
		for k := range r.cache {
			if len(r.cache) < r.opts.CacheSize {
				break
			}
			delete(r.cache, k)
		}
	}
	r.cache[key] = e
}

// answer is one decoded response: the records of the asked type (CNAME
// chains followed by the recursive server), the smallest TTL among them,
// and the negative TTL for NXDOMAIN or an empty answer.
type answer struct {
	rrs []dns.RR
	nx  bool
	// secure: the server set the AD bit (it validated the answer with
	// DNSSEC); only a validating resolver on a trusted path can say so
	secure bool
	ttl    time.Duration
	negTTL time.Duration
}

// query asks the servers for name/qtype. NXDOMAIN is a successful answer
// with nx set; SERVFAIL, REFUSED and transport errors move on to the next
// server and finally become the error.
func (r *Resolver) query(ctx context.Context, name string, qtype uint16) (*answer, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.RecursionDesired = true
	m.AuthenticatedData = true // ask for the AD bit (RFC 6840 section 5.7)
	m.SetEdns0(1232, false)
	var lastErr error
	for attempt := 0; attempt < r.opts.Attempts; attempt++ {
		for _, srv := range r.servers {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			resp, err := r.exchange(ctx, m, srv)
			if err != nil {
				lastErr = fmt.Errorf("%s: %w", srv, err)
				continue
			}
			switch resp.Rcode {
			case dns.RcodeSuccess, dns.RcodeNameError:
				return r.decode(resp, qtype), nil
			}
			lastErr = fmt.Errorf("%s: server answered %s", srv, dns.RcodeToString[resp.Rcode])
		}
	}
	return nil, lastErr
}

func (r *Resolver) exchange(ctx context.Context, m *dns.Msg, srv string) (*dns.Msg, error) {
	qctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
	defer cancel()
	m.Id = dns.Id()
	resp, err := r.udp.exchange(qctx, m, srv)
	if err != nil {
		return nil, err
	}
	if resp.Truncated {
		resp, _, err = r.tcp.ExchangeContext(qctx, m, srv)
		if err != nil {
			return nil, fmt.Errorf("tcp after truncated udp answer: %w", err)
		}
	}
	return resp, nil
}

func (r *Resolver) decode(resp *dns.Msg, qtype uint16) *answer {
	a := &answer{nx: resp.Rcode == dns.RcodeNameError, secure: resp.AuthenticatedData}
	var minTTL uint32
	for _, rr := range resp.Answer {
		if rr.Header().Rrtype != qtype {
			continue
		}
		if len(a.rrs) == 0 || rr.Header().Ttl < minTTL {
			minTTL = rr.Header().Ttl
		}
		a.rrs = append(a.rrs, rr)
	}
	a.ttl = r.clampTTL(time.Duration(minTTL) * time.Second)
	a.negTTL = r.opts.NegativeTTL
	for _, rr := range resp.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			t := min(soa.Hdr.Ttl, soa.Minttl)
			a.negTTL = min(r.opts.NegativeTTL, max(r.opts.MinTTL, time.Duration(t)*time.Second))
			break
		}
	}
	return a
}

func (r *Resolver) clampTTL(d time.Duration) time.Duration {
	return min(max(d, r.opts.MinTTL), r.opts.MaxTTL)
}

func (r *Resolver) failureTTL() time.Duration {
	if r.opts.FailureTTL < 0 {
		return 0
	}
	return r.opts.FailureTTL
}

// Strategy names for LookupAddr, as KumoMTA's ip_lookup_strategy.
const (
	Ipv4AndIpv6  = "Ipv4AndIpv6" // both families, IPv4 first (the default, also "")
	Ipv4Only     = "Ipv4Only"
	Ipv6Only     = "Ipv6Only"
	Ipv4ThenIpv6 = "Ipv4thenIpv6" // IPv6 only when there is no IPv4 address
	Ipv6ThenIpv4 = "Ipv6thenIpv4" // IPv4 only when there is no IPv6 address
)

// ValidStrategy reports whether s names a lookup strategy ("" is the
// default Ipv4AndIpv6).
func ValidStrategy(s string) bool {
	switch s {
	case "", Ipv4AndIpv6, Ipv4Only, Ipv6Only, Ipv4ThenIpv6, Ipv6ThenIpv4:
		return true
	}
	return false
}

// LookupAddr resolves host to its addresses per strategy. An IP address
// (bracketed or not) is returned as is. A name with no addresses of the
// wanted families gives an empty slice and no error; a name that does not
// exist gives an error wrapping ErrNXDOMAIN.
func (r *Resolver) LookupAddr(ctx context.Context, host, strategy string) ([]netip.Addr, error) {
	addrs, _, err := r.lookupAddr(ctx, host, strategy)
	return addrs, err
}

// lookupAddr is LookupAddr that also reports whether every answer that
// gave addresses carried the AD bit (an IP address or localhost: false).
func (r *Resolver) lookupAddr(ctx context.Context, host, strategy string) ([]netip.Addr, bool, error) {
	if a, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		return []netip.Addr{a.Unmap()}, false, nil
	}
	name, err := fqdn(host)
	if err != nil {
		return nil, false, err
	}
	if isLocalhost(name) {
		return localhostAddrs(strategy), false, nil
	}
	var insecure atomic.Bool // set from the AAAA goroutine too
	get := func(qtype uint16) ([]netip.Addr, error) {
		v, err := r.cached(ctx, cacheKey{name, qtype}, func(ctx context.Context) (any, time.Duration, error) {
			return r.fetchAddrs(ctx, name, qtype)
		})
		a, _ := v.(addrAnswer)
		if len(a.addrs) > 0 && !a.secure {
			insecure.Store(true)
		}
		return a.addrs, err
	}
	addrs, err := byStrategy(get, strategy)
	return addrs, len(addrs) > 0 && !insecure.Load(), err
}

// byStrategy asks get for the address families of strategy.
func byStrategy(get func(qtype uint16) ([]netip.Addr, error), strategy string) ([]netip.Addr, error) {
	switch strategy {
	case Ipv4Only:
		return get(dns.TypeA)
	case Ipv6Only:
		return get(dns.TypeAAAA)
	case Ipv4ThenIpv6:
		v4, err := get(dns.TypeA)
		if len(v4) > 0 || (err != nil && errors.Is(err, ErrNXDOMAIN)) {
			return v4, err
		}
		v6, err6 := get(dns.TypeAAAA)
		if len(v6) > 0 || err == nil {
			return v6, err6
		}
		return nil, err
	case Ipv6ThenIpv4:
		v6, err := get(dns.TypeAAAA)
		if len(v6) > 0 || (err != nil && errors.Is(err, ErrNXDOMAIN)) {
			return v6, err
		}
		v4, err4 := get(dns.TypeA)
		if len(v4) > 0 || err == nil {
			return v4, err4
		}
		return nil, err
	case "", Ipv4AndIpv6:
		var (
			v4, v6     []netip.Addr
			err4, err6 error
			wg         sync.WaitGroup
		)
		wg.Add(1)
		go func() { defer wg.Done(); v6, err6 = get(dns.TypeAAAA) }()
		v4, err4 = get(dns.TypeA)
		wg.Wait()
		if len(v4)+len(v6) == 0 {
			// No address: a failure of either query is the answer.
			if err4 != nil {
				return nil, err4
			}
			if err6 != nil {
				return nil, err6
			}
		}
		out := make([]netip.Addr, 0, len(v4)+len(v6))
		return append(append(out, v4...), v6...), nil
	}
	return nil, fmt.Errorf("mx: unknown ip_lookup_strategy %q", strategy)
}

func (r *Resolver) fetchAddrs(ctx context.Context, name string, qtype uint16) (any, time.Duration, error) {
	ans, err := r.query(ctx, name, qtype)
	if err != nil {
		return nil, r.failureTTL(), fmt.Errorf("mx: lookup %s %s: %w", name, dns.TypeToString[qtype], err)
	}
	if ans.nx {
		return addrAnswer{}, ans.negTTL, fmt.Errorf("mx: lookup %s %s: %w", name, dns.TypeToString[qtype], ErrNXDOMAIN)
	}
	if len(ans.rrs) == 0 {
		return addrAnswer{}, ans.negTTL, nil
	}
	addrs := make([]netip.Addr, 0, len(ans.rrs))
	for _, rr := range ans.rrs {
		var ip net.IP
		switch rr := rr.(type) {
		case *dns.A:
			ip = rr.A
		case *dns.AAAA:
			ip = rr.AAAA
		}
		if a, ok := netip.AddrFromSlice(ip); ok {
			addrs = append(addrs, a.Unmap())
		}
	}
	return addrAnswer{addrs: addrs, secure: ans.secure}, ans.ttl, nil
}

// addrAnswer is the cached answer of an A or AAAA query; secure: it
// carried the AD bit (DANE, dnssec.go).
type addrAnswer struct {
	addrs  []netip.Addr
	secure bool
}

// fqdn validates a host name and returns it lower-cased with the trailing
// dot.
func fqdn(host string) (string, error) {
	name := strings.ToLower(strings.TrimSpace(host))
	if name == "" {
		return "", errors.New("mx: empty domain name")
	}
	name = dns.Fqdn(name)
	if _, ok := dns.IsDomainName(name); !ok {
		return "", fmt.Errorf("mx: invalid domain name %q", host)
	}
	return name, nil
}

func splitPort(s string) (host string, port int, err error) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return s, 0, nil
	}
	p, err := strconv.Atoi(s[i+1:])
	if err != nil || p <= 0 || p > 65535 {
		return "", 0, fmt.Errorf("invalid port in %q", s)
	}
	return s[:i], p, nil
}

// isLocalhost reports whether the lower-case FQDN name is "localhost." or
// a name under it, which RFC 6761 reserves for the loopback addresses;
// KumoMTA's resolver answers them without asking a name server.
func isLocalhost(name string) bool {
	return name == "localhost." || strings.HasSuffix(name, ".localhost.")
}

// localhostAddrs are the loopback addresses in the order strategy wants.
func localhostAddrs(strategy string) []netip.Addr {
	v4, v6 := netip.AddrFrom4([4]byte{127, 0, 0, 1}), netip.IPv6Loopback()
	switch strategy {
	case Ipv4Only, Ipv4ThenIpv6:
		return []netip.Addr{v4}
	case Ipv6Only, Ipv6ThenIpv4:
		return []netip.Addr{v6}
	}
	return []netip.Addr{v4, v6}
}
