// Command traffic-gen is kumogo's SMTP load generator, compatible with
// KumoMTA's traffic-gen: it opens --concurrency connections to --target and
// sends generated messages over each, reusing the connection and pipelining
// the envelope when the server offers PIPELINING, until --duration has
// passed or --message-count messages have been accepted.
//
// Each message goes from noreply@<domain>.<suffix> to
// user-<random>@<domain>.<suffix> (domains picked by weight from --domain)
// with From, To, Subject, Message-Id and X-Mailer headers, any --header,
// and a lorem body of --body-size bytes (or --body-file as the whole
// message). --bdat sends it with "BDAT <n> LAST" when CHUNKING is offered,
// in one write and one round trip.
//
// A progress line on stderr shows the current rate every second; at the end
// traffic-gen prints the number sent and failed, transaction latency
// percentiles and the overall rate (or, with --json, one JSON object on
// stdout). The exit status is 1 when a client stopped on an error, 2 for
// a bad command line.
//
// Beyond KumoMTA's options: --bdat, --json and --timeout (the bound on
// connecting and on each transaction, 60 s). --http injects the same
// messages through POST /api/inject/v1 (raw content, --http-batch-size
// recipients per request, --http-defer-spool, --http-defer-generation).
//
// Usage:
//
//	traffic-gen --target 127.0.0.1:2025 --concurrency 50 --body-size 100kb --bdat --duration 10
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/kumogo/kumogo/internal/sysutil"
	"github.com/kumogo/kumogo/internal/throttle"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is the whole program; it returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseArgs(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "traffic-gen:", err)
		return 2
	}
	if limit, err := sysutil.RaiseFileLimit(); err != nil {
		fmt.Fprintln(stderr, "traffic-gen: raising the open file limit:", err)
	} else if limit > 0 && uint64(cfg.concurrency)+fdReserve > limit {
		n := max(int(limit)-fdReserve, 1)
		fmt.Fprintf(stderr, "traffic-gen: warning: the open file limit is %d (hard limit); using %d connections instead of --concurrency %d\n",
			limit, n, cfg.concurrency)
		cfg.concurrency = n
	}
	p, err := newPayload(cfg)
	if err != nil {
		fmt.Fprintln(stderr, "traffic-gen:", err)
		return 2
	}
	g := newGenerator(cfg, p, stderr)
	res := g.run(ctx)
	res.print(cfg, p, stdout, stderr)
	if res.clientErrors > 0 {
		return 1
	}
	return 0
}

// fdReserve is the number of file descriptors kept free for everything
// but the client connections (standard streams, the poller, --body-file).
const fdReserve = 16

// generator runs the clients and keeps the counters.
type generator struct {
	cfg     *config
	p       *payload
	limiter *throttle.Limiter
	errOut  *errorLog

	sent     atomic.Uint64 // claimed and not failed
	inflight atomic.Int64
	failed   atomic.Uint64
	clients  atomic.Int64 // connected clients
	lat      *histogram
	http     *httpInjector // --http

	mu    sync.Mutex
	conns map[*smtpConn]struct{}

	// finish ends the clients' context once the --message-count budget is
	// spent and every claimed message is answered, so that clients still
	// connecting or waiting for a greeting give up at once
	finish     context.CancelFunc
	finishOnce sync.Once
}

func newGenerator(cfg *config, p *payload, stderr io.Writer) *generator {
	g := &generator{cfg: cfg, p: p, lat: newHistogram(), conns: map[*smtpConn]struct{}{},
		errOut: &errorLog{w: stderr, max: 20}}
	if cfg.throttle != nil {
		g.limiter = throttle.NewLimiter(*cfg.throttle)
	}
	if cfg.http {
		g.http = newHTTPInjector(cfg, p)
	}
	return g
}

// result is the final tally.
type result struct {
	sent, failed uint64
	elapsed      time.Duration
	latency      latencySummary
	clientErrors int
}

// drainGrace is how long a transaction in flight at the deadline may take
// to finish before its connection is cut.
const drainGrace = 2 * time.Second

// finishGrace bounds the goodbyes once every message is answered: after
// it, connections still open are cut (each QUIT already waits at most
// quitWait).
const finishGrace = time.Second

func (g *generator) run(parent context.Context) result {
	dctx, cancel := context.WithTimeout(parent, g.cfg.duration)
	defer cancel()
	ctx, finish := context.WithCancel(dctx)
	defer finish()
	g.finish = finish
	start := time.Now()

	var wg sync.WaitGroup
	var clientErrors atomic.Int64
	for i := range g.cfg.concurrency {
		wg.Go(func() {
			if err := g.client(ctx, uint64(i)); err != nil {
				clientErrors.Add(1)
				g.errOut.printf("client %d stopped: %v", i, err)
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()

	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	prog := &progress{w: g.errOut}
	last, lastAt := uint64(0), start
	over, cut := ctx.Done(), (<-chan time.Time)(nil)
	grace := drainGrace
wait:
	for {
		select {
		case <-done:
			break wait
		case now := <-tick.C:
			s := g.sent.Load()
			rate := float64(s-min(s, last)) / now.Sub(lastAt).Seconds()
			last, lastAt = s, now
			prog.show(fmt.Sprintf("current rate: %s (sent=%s, clients=%d)", rateText(rate), groupThousands(s), g.clients.Load()))
		case <-over:
			over = nil // once: a done channel stays ready
			if dctx.Err() == nil {
				grace = finishGrace // all answered: nothing to drain
			}
			cut = time.After(grace)
		case <-cut:
			g.cutAll()
			cut = time.After(grace) // again, for any connection opened since
		}
	}
	elapsed := time.Since(start)
	prog.end()
	return result{
		sent:         g.sent.Load(),
		failed:       g.failed.Load(),
		elapsed:      elapsed,
		latency:      g.lat.summary(),
		clientErrors: int(clientErrors.Load()),
	}
}

// cutAll makes every open connection fail its current I/O.
func (g *generator) cutAll() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for c := range g.conns {
		c.nc.SetDeadline(time.Unix(1, 0))
	}
}

// claim takes one message from the budget. It returns ok=false when the
// budget is used up; then finished tells whether every claimed message has
// completed (otherwise one may still fail and be given back).
func (g *generator) claim() (ok, finished bool) {
	n := g.cfg.messageCount
	for {
		cur := g.sent.Load()
		if n > 0 && cur >= n {
			return false, g.checkFinished()
		}
		g.inflight.Add(1)
		if g.sent.CompareAndSwap(cur, cur+1) {
			return true, false
		}
		g.inflight.Add(-1)
	}
}

// checkFinished reports whether the budget is spent and nothing is in
// flight; the first time it is, it ends the clients' context. Both the
// client that completes the last message and any client that then finds
// the budget spent check it, so a claim that raced the last completion
// cannot hide the end.
func (g *generator) checkFinished() bool {
	n := g.cfg.messageCount
	if n == 0 || g.sent.Load() < n || g.inflight.Load() != 0 {
		return false
	}
	if g.finish != nil {
		g.finishOnce.Do(g.finish)
	}
	return true
}

// client is one connection's loop. It returns nil at the deadline or when
// the message budget is spent, and an error when it stopped on one.
func (g *generator) client(ctx context.Context, id uint64) error {
	if g.http != nil {
		return g.httpClient(ctx, id)
	}
	b := newMessageBuilder(g.p, uint64(time.Now().UnixNano())^id*0x9e3779b97f4a7c15)
	var c *smtpConn
	defer func() {
		if c != nil {
			g.drop(c, true)
		}
	}()
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		if c == nil {
			var err error
			c, err = dialSMTP(ctx, g.cfg.target, b.ehloName(), g.cfg.timeout, g.cfg.starttls)
			if err != nil {
				if ended(ctx) {
					return nil
				}
				if !g.cfg.keepGoing && !needsReconnectOnly(err) {
					return err
				}
				g.errOut.printf("client %d: %v (retrying)", id, err)
				sleep(ctx, backoff)
				backoff = min(2*backoff, 2*time.Second)
				continue
			}
			backoff = 50 * time.Millisecond
			g.add(c)
		}
		if g.limiter != nil {
			if !sleep(ctx, g.limiter.ReserveAt(time.Now())) {
				return nil
			}
		}
		ok, finished := g.claim()
		if !ok {
			if finished {
				return nil
			}
			sleep(ctx, 10*time.Millisecond)
			continue
		}
		start := time.Now()
		err := c.send(b, start, g.cfg.bdat)
		if err == nil {
			g.lat.record(time.Since(start))
			g.inflight.Add(-1)
			g.checkFinished()
			continue
		}
		// give the claim back before leaving the in-flight set, so that a
		// client waiting in claim never sees the budget spent and nothing
		// in flight while this message is still counted
		g.sent.Add(^uint64(0))
		g.inflight.Add(-1)
		if ended(ctx) {
			return nil // cut at the deadline: not a failure of the target
		}
		g.failed.Add(1)
		if needsReconnect(err) {
			g.drop(c, false)
			c = nil
			if g.cfg.keepGoing || isReconnectReply(err) || isTimeout(err) {
				continue
			}
			return err
		}
		if !g.cfg.keepGoing {
			return err
		}
		g.errOut.printf("client %d: %v", id, err)
	}
	return nil
}

// ended reports whether the run is over: ctx is done or its deadline has
// passed (a dial bounded by that deadline may fail a moment before ctx
// itself reports it).
func ended(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	d, ok := ctx.Deadline()
	return ok && !time.Now().Before(d)
}

// needsReconnectOnly reports whether a connection attempt failed in a way
// that calls for another attempt rather than giving up: a 421 or 451 4.5.3
// greeting or a timeout.
func needsReconnectOnly(err error) bool {
	return isReconnectReply(err) || isTimeout(err)
}

func isReconnectReply(err error) bool {
	var se *smtpError
	return errors.As(err, &se) && se.reconnect()
}

func isTimeout(err error) bool {
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}

func (g *generator) add(c *smtpConn) {
	g.mu.Lock()
	g.conns[c] = struct{}{}
	g.mu.Unlock()
	g.clients.Add(1)
}

// drop forgets c and closes it, saying QUIT first when polite.
func (g *generator) drop(c *smtpConn, polite bool) {
	g.mu.Lock()
	delete(g.conns, c)
	g.mu.Unlock()
	g.clients.Add(-1)
	if polite {
		c.quitAndClose()
	} else {
		c.nc.Close()
	}
}

// sleep waits d or until ctx is done; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// errorLog prints error lines to stderr, at most max of them, without
// breaking the progress line.
type errorLog struct {
	mu         sync.Mutex
	w          io.Writer
	max, n     int
	progressOn bool
}

func (e *errorLog) printf(format string, args ...any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.n++
	if e.n > e.max {
		if e.n == e.max+1 {
			e.line("traffic-gen: further errors not shown")
		}
		return
	}
	e.line("traffic-gen: " + fmt.Sprintf(format, args...))
}

// line writes a whole line, ending the progress line first.
func (e *errorLog) line(s string) {
	if e.progressOn {
		io.WriteString(e.w, "\n")
		e.progressOn = false
	}
	io.WriteString(e.w, s+"\n")
}

// progress is the updating status line.
type progress struct {
	w    *errorLog
	last int
}

func (p *progress) show(s string) {
	p.w.mu.Lock()
	defer p.w.mu.Unlock()
	pad := ""
	if !p.w.progressOn {
		p.last = 0
	}
	for range p.last - len(s) {
		pad += " "
	}
	io.WriteString(p.w.w, "\r"+s+pad)
	p.last = len(s)
	p.w.progressOn = true
}

func (p *progress) end() {
	p.w.mu.Lock()
	defer p.w.mu.Unlock()
	if p.w.progressOn {
		io.WriteString(p.w.w, "\n")
		p.w.progressOn = false
	}
}

// jsonSummary is the --json output.
type jsonSummary struct {
	Sent        uint64             `json:"sent"`
	Failed      uint64             `json:"failed"`
	ElapsedSecs float64            `json:"elapsed_secs"`
	RatePerSec  float64            `json:"rate_per_sec"`
	RatePerMin  float64            `json:"rate_per_minute"`
	RatePerHour float64            `json:"rate_per_hour"`
	LatencyMS   map[string]float64 `json:"latency_ms"`
	Target      string             `json:"target"`
	Concurrency int                `json:"concurrency"`
	BodyBytes   int                `json:"body_bytes"`
	BDAT        bool               `json:"bdat"`
}

func (r result) rate() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.sent) / r.elapsed.Seconds()
}

// print writes the final report: text to stdout (to stderr with --json)
// and, with --json, the JSON object to stdout.
func (r result) print(cfg *config, p *payload, stdout, stderr io.Writer) {
	text := stdout
	if cfg.json {
		text = stderr
	}
	l := r.latency
	d := roundDuration
	fmt.Fprintf(text, "sent %s messages, failed %s over %v.\n", groupThousands(r.sent), groupThousands(r.failed), d(r.elapsed))
	fmt.Fprintf(text, "transaction latency: avg=%v min=%v max=%v p50=%v p75=%v p90=%v p95=%v p99=%v p99.9=%v\n",
		d(l.Avg), d(l.Min), d(l.Max), d(l.P50), d(l.P75), d(l.P90), d(l.P95), d(l.P99), d(l.P999))
	fmt.Fprintf(text, "overall rate: %s\n", rateText(r.rate()))
	if !cfg.json {
		return
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	js := jsonSummary{
		Sent: r.sent, Failed: r.failed, ElapsedSecs: r.elapsed.Seconds(),
		RatePerSec: r.rate(), RatePerMin: r.rate() * 60, RatePerHour: r.rate() * 3600,
		LatencyMS: map[string]float64{
			"avg": ms(l.Avg), "min": ms(l.Min), "max": ms(l.Max),
			"p50": ms(l.P50), "p75": ms(l.P75), "p90": ms(l.P90), "p95": ms(l.P95), "p99": ms(l.P99), "p99.9": ms(l.P999),
		},
		Target: cfg.target, Concurrency: cfg.concurrency, BodyBytes: len(p.body), BDAT: cfg.bdat,
	}
	b, _ := json.Marshal(js)
	stdout.Write(append(b, '\n'))
}
