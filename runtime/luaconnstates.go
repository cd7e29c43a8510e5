package runtime

import (
	"sync"
)

// Spare states of custom_lua sessions. A session keeps one Lua state for
// its life (KumoMTA's make_queue_config protocol page), but making a state
// runs the whole policy, which costs about a millisecond with the bundled
// helpers. A receiver that is down ends a session at every send (its Lua
// error closes the session, as in KumoMTA), so without spares every
// delivery attempt of a hook's backlog would pay for a new state, and
// that CPU is taken from reception. A closed session's state is kept here
// and the next session runs its constructor in it; like the event pool's
// states, a spare is dropped when the configuration epoch moved on, when
// it is older than the pool's age limit or over its memory limit.

// maxSpareConnStates bounds the spare session states of a runtime.
const maxSpareConnStates = 16

// connStates holds the spare session states.
type connStates struct {
	once  sync.Once
	spare chan *state
}

// Close closes the spare states (the runtime closes it with itself).
func (c *connStates) Close() error {
	for {
		select {
		case st := <-c.spare:
			st.L.Close()
		default:
			return nil
		}
	}
}

func (r *Runtime) connSpares() chan *state {
	c := &r.connStates
	c.once.Do(func() {
		c.spare = make(chan *state, maxSpareConnStates)
		r.own(c)
	})
	return c.spare
}

// usableSpare reports whether st may serve another session.
func (r *Runtime) usableSpare(st *state) bool {
	// a session state counts no uses (only the event pool's put does),
	// so expired checks the epoch and the age limit here
	return !r.closed.Load() && !st.L.MemoryLimitExceeded() && !r.expired(st)
}

// sessionState returns a spare session state, or a new one.
func (r *Runtime) sessionState() (*state, error) {
	spare := r.connSpares()
	for {
		select {
		case st := <-spare:
			if r.usableSpare(st) {
				return st, nil
			}
			st.L.Close()
			continue
		default:
		}
		return r.newState()
	}
}

// releaseSessionState keeps st as a spare, or closes it.
func (r *Runtime) releaseSessionState(st *state) {
	st.L.SetTop(0)
	if r.usableSpare(st) {
		select {
		case r.connSpares() <- st:
			if r.closed.Load() {
				// closed meanwhile: Close may have drained the spares
				// already
				_ = r.connStates.Close()
			}
			return
		default:
		}
	}
	st.L.Close()
}
