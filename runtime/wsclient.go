package runtime

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/coder/websocket"
	lua "github.com/yuin/gopher-lua"

	"github.com/kumogo/kumogo/internal/duration"
)

// The 'kumogo.websocket' module is kumogo's own (not a KumoMTA API): a
// websocket client for the bundled policy-extras.shaping, whose TSA
// subscriber takes suspensions and bounces pushed by the tsa-daemon's
// /subscribe_event_v1, as KumoMTA's shaping helper does with
// kumo.http.connect_websocket.
//
//	local ws = require 'kumogo.websocket'
//	local conn = ws.connect('ws://127.0.0.1:8008/subscribe_event_v1')
//	local batch = conn:recv_batch(3) -- text messages, {} after 3 s
//	conn:close()
//
// connect raises an error naming the HTTP status when the server refuses
// the upgrade (a daemon without the endpoint answers 404).

// wsDialTimeout bounds the websocket handshake.
const wsDialTimeout = 10 * time.Second

// wsMaxBatch bounds one recv_batch result.
const wsMaxBatch = 1024

// wsConn is one client connection; a goroutine reads messages into msgs.
type wsConn struct {
	c      *websocket.Conn
	cancel context.CancelFunc
	msgs   chan string
	mu     sync.Mutex
	err    error // why msgs was closed
}

// preloadWebsocket makes require 'kumogo.websocket' build the module on
// first use (package.preload), so that states that never subscribe pay
// nothing for it.
func (st *state) preloadWebsocket() {
	L := st.L
	pkg, ok := L.GetGlobal("package").(*lua.LTable)
	if !ok {
		return
	}
	pre, ok := pkg.RawGetString("preload").(*lua.LTable)
	if !ok {
		return
	}
	pre.RawSetString("kumogo.websocket", L.NewFunction(func(L *lua.LState) int {
		L.Push(st.openWebsocket())
		return 1
	}))
}

func (st *state) openWebsocket() *lua.LTable {
	t := st.L.NewTable()
	t.RawSetString("connect", st.L.NewFunction(st.wsConnect))
	return t
}

func (st *state) wsConnect(L *lua.LState) int {
	url := L.CheckString(1)
	dctx, dcancel := context.WithTimeout(st.callCtx(), wsDialTimeout)
	defer dcancel()
	c, _, err := websocket.Dial(dctx, url, nil)
	if err != nil {
		L.RaiseError("kumogo.websocket.connect %s: %s", url, err.Error())
	}
	c.SetReadLimit(16 << 20)
	ctx, cancel := context.WithCancel(context.Background())
	w := &wsConn{c: c, cancel: cancel, msgs: make(chan string, wsMaxBatch)}
	go w.readLoop(ctx)
	obj := L.NewTable()
	obj.RawSetString("recv_batch", L.NewFunction(func(L *lua.LState) int {
		return st.wsRecvBatch(L, w)
	}))
	obj.RawSetString("close", L.NewFunction(func(L *lua.LState) int {
		w.close()
		return 0
	}))
	L.Push(obj)
	return 1
}

func (w *wsConn) readLoop(ctx context.Context) {
	defer close(w.msgs)
	for {
		_, b, err := w.c.Read(ctx)
		if err != nil {
			w.mu.Lock()
			w.err = err
			w.mu.Unlock()
			return
		}
		select {
		case w.msgs <- string(b):
		case <-ctx.Done():
			return
		}
	}
}

func (w *wsConn) close() {
	w.cancel()
	w.c.Close(websocket.StatusNormalClosure, "")
}

// wsRecvBatch is conn:recv_batch(timeout): it waits up to timeout
// (seconds, or a duration string) for a message, then takes those already
// received; an empty list when none came. It raises an error when the
// connection has ended.
func (st *state) wsRecvBatch(L *lua.LState, w *wsConn) int {
	var d time.Duration
	var err error
	switch v := L.Get(2).(type) {
	case lua.LNumber:
		d, err = duration.FromSeconds(float64(v))
	case lua.LString:
		d, err = duration.Parse(string(v))
	default:
		err = fmt.Errorf("expected a duration")
	}
	if err != nil {
		L.ArgError(2, err.Error())
	}
	out := L.NewTable()
	timer := time.NewTimer(d)
	defer timer.Stop()
	closed := false
	select {
	case m, ok := <-w.msgs:
		if !ok {
			closed = true
			break
		}
		out.Append(lua.LString(m))
	drain:
		for out.Len() < wsMaxBatch {
			select {
			case m, ok := <-w.msgs:
				if !ok {
					break drain
				}
				out.Append(lua.LString(m))
			default:
				break drain
			}
		}
	case <-timer.C:
	case <-st.callCtx().Done():
		L.RaiseError("kumogo.websocket: recv_batch interrupted: %s", context.Cause(st.callCtx()).Error())
	}
	if closed {
		w.mu.Lock()
		err := w.err
		w.mu.Unlock()
		L.RaiseError("kumogo.websocket: connection ended: %v", err)
	}
	L.Push(out)
	return 1
}
