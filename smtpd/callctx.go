package smtpd

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// callCtx is the data_processing_timeout context of one session. Policy
// calls run one at a time per session, so instead of a context.WithTimeout
// per call (a context, a timer and a channel each time) the session re-arms
// this one with a timer it keeps.
//
// A callCtx whose deadline passed is never re-armed: its Done channel
// stays closed and the session takes a new one (newCallCtx), so anything
// that still held it keeps seeing it expired. Between calls the timer is
// stopped; callers must not keep the context after their call returns.
type callCtx struct {
	done     chan struct{}
	fired    atomic.Bool
	deadline atomic.Int64 // wall clock, Unix nanoseconds (Deadline)

	mu    sync.Mutex
	armed bool
	due   time.Time // with its monotonic reading (fire)
	timer *time.Timer
}

var _ context.Context = (*callCtx)(nil)

func newCallCtx() *callCtx { return &callCtx{done: make(chan struct{})} }

// arm starts a call that must end within d.
func (c *callCtx) arm(d time.Duration) {
	due := time.Now().Add(d)
	c.mu.Lock()
	c.armed, c.due = true, due
	c.mu.Unlock()
	c.deadline.Store(due.UnixNano())
	if c.timer == nil {
		c.timer = time.AfterFunc(d, c.fire)
	} else {
		c.timer.Reset(d)
	}
}

// disarm ends the call and reports whether its deadline passed.
func (c *callCtx) disarm() (expired bool) {
	c.timer.Stop()
	c.mu.Lock()
	c.armed = false
	c.mu.Unlock()
	return c.fired.Load()
}

// fire runs on the timer's goroutine. A run left over from an earlier
// arming (Stop lost the race) finds the context disarmed or its new
// deadline still ahead and does nothing.
func (c *callCtx) fire() {
	c.mu.Lock()
	if c.armed && !c.fired.Load() && !time.Now().Before(c.due) {
		c.fired.Store(true)
		close(c.done)
	}
	c.mu.Unlock()
}

func (c *callCtx) Deadline() (time.Time, bool) {
	return time.Unix(0, c.deadline.Load()), true
}

func (c *callCtx) Done() <-chan struct{} { return c.done }

func (c *callCtx) Err() error {
	if c.fired.Load() {
		return context.DeadlineExceeded
	}
	return nil
}

func (c *callCtx) Value(any) any { return nil }

// ctx returns the context for one policy call (data_processing_timeout)
// and the function that ends it. The session's reusable context serves
// every call that is not nested in another one.
func (ss *session) ctx() (context.Context, context.CancelFunc) {
	if ss.call == nil {
		ss.call = newCallCtx()
		ss.endCall = func() {
			if !ss.inCall {
				return
			}
			if ss.call.disarm() {
				ss.call = nil // expired: never re-armed
			}
			ss.inCall = false
		}
	}
	if ss.inCall {
		return context.WithTimeout(context.Background(), ss.cfg.DataProcessingTimeout)
	}
	ss.inCall = true
	ss.call.arm(ss.cfg.DataProcessingTimeout)
	return ss.call, ss.endCall
}
