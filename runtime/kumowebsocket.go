package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/coder/websocket"
	lua "github.com/yuin/gopher-lua"

	"github.com/kumogo/kumogo/internal/config"
)

// wsStream is a kumo.http.connect_websocket stream (KumoMTA's
// connect_websocket page). A goroutine reads the connection for its whole
// life into msgs, because coder/websocket closes a connection whose read
// is cancelled, and recv_batch must be able to stop waiting without
// losing the connection; a full msgs stops the reads (TCP back pressure).
type wsStream struct {
	conn   *websocket.Conn
	msgs   chan string
	done   chan struct{} // closed when the reader stops; err is set
	err    error
	cancel context.CancelFunc
	once   sync.Once
}

// wsReadLimit bounds one message (coder/websocket's default is 32 KiB,
// too small for a batch of log records).
const wsReadLimit = 16 << 20

// wsDialTimeout bounds connecting and the opening handshake.
const wsDialTimeout = 30 * time.Second

func dialWebSocket(ctx context.Context, raw string) (*wsStream, *httpResponse, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, nil, err
	}
	if u.Scheme != "ws" && u.Scheme != "wss" {
		return nil, nil, fmt.Errorf("the URL must be ws:// or wss://, not %s://", u.Scheme)
	}
	dctx, cancel := context.WithTimeout(ctx, wsDialTimeout)
	defer cancel()
	conn, resp, err := websocket.Dial(dctx, raw, nil)
	if err != nil {
		return nil, nil, err
	}
	hr := &httpResponse{status: resp.StatusCode, header: resp.Header}
	if resp.Body != nil {
		// a 101 answer has no body; bounded all the same
		hr.body, _ = io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	}
	if hr.header == nil {
		hr.header = http.Header{}
	}
	conn.SetReadLimit(wsReadLimit)
	rctx, rcancel := context.WithCancel(context.Background())
	s := &wsStream{conn: conn, msgs: make(chan string, 64), done: make(chan struct{}), cancel: rcancel}
	go s.read(rctx)
	return s, hr, nil
}

func (s *wsStream) read(ctx context.Context) {
	defer close(s.done)
	for {
		_, b, err := s.conn.Read(ctx)
		if err != nil {
			s.err = err
			return
		}
		select {
		case s.msgs <- string(b):
		case <-ctx.Done():
			s.err = ctx.Err()
			return
		}
	}
}

// Close closes the connection and stops the reader.
func (s *wsStream) Close() error {
	s.once.Do(func() {
		s.conn.Close(websocket.StatusNormalClosure, "")
		s.cancel()
	})
	return nil
}

// recv waits for the next message; an error once the connection is gone
// and every message it delivered has been taken.
func (s *wsStream) recv(ctx context.Context) (string, error) {
	select {
	case m := <-s.msgs:
		return m, nil
	default:
	}
	select {
	case m := <-s.msgs:
		return m, nil
	case <-s.done:
		select {
		case m := <-s.msgs:
			return m, nil
		default:
		}
		return "", s.closedErr()
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// recvBatch collects the messages that arrive within d. A connection that
// is gone with nothing received is an error; otherwise what was received
// so far is returned (KumoMTA's recv_batch).
func (s *wsStream) recvBatch(ctx context.Context, d time.Duration) ([]string, error) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	var out []string
	for {
		select {
		case m := <-s.msgs:
			out = append(out, m)
			continue
		default:
		}
		select {
		case m := <-s.msgs:
			out = append(out, m)
		case <-s.done:
			out = s.drain(out)
			if len(out) == 0 {
				return nil, s.closedErr()
			}
			return out, nil
		case <-timer.C:
			return out, nil
		case <-ctx.Done():
			if len(out) > 0 {
				return out, nil
			}
			return nil, ctx.Err()
		}
	}
}

// drain appends the messages already received.
func (s *wsStream) drain(out []string) []string {
	for {
		select {
		case m := <-s.msgs:
			out = append(out, m)
		default:
			return out
		}
	}
}

func (s *wsStream) closedErr() error {
	var ce websocket.CloseError
	if errors.As(s.err, &ce) {
		return fmt.Errorf("the websocket was closed by the peer (%d %s)", int(ce.Code), ce.Reason)
	}
	return fmt.Errorf("the websocket is closed: %w", s.err)
}

// addWebSocket adds connect_websocket to kumo.http; respMT is the
// metatable of kumo.http's Response objects, the type of the handshake
// response.
func (st *state) addWebSocket(t *lua.LTable, respMT *lua.LTable) {
	L := st.L
	mt := L.NewTypeMetatable("kumo.http.WebSocketStream")
	check := func(L *lua.LState) *wsStream {
		return checkSelf[*wsStream](L, "websocket stream expected (use stream:method())")
	}
	methods := L.NewTable()
	L.SetFuncs(methods, map[string]lua.LGFunction{
		"recv": func(L *lua.LState) int {
			m, err := check(L).recv(st.callCtx())
			if err != nil {
				L.RaiseError("kumo.http: websocket recv: %s", err.Error())
			}
			L.Push(lua.LString(m))
			return 1
		},
		"recv_batch": func(L *lua.LState) int {
			s := check(L)
			d, err := config.DecodeDuration(luaDurationArg(L, 2))
			if err != nil {
				L.RaiseError("kumo.http: websocket recv_batch: %s", err.Error())
			}
			msgs, err := s.recvBatch(st.callCtx(), d)
			if err != nil {
				L.RaiseError("kumo.http: websocket recv_batch: %s", err.Error())
			}
			out := L.CreateTable(len(msgs), 0)
			for _, m := range msgs {
				out.Append(lua.LString(m))
			}
			L.Push(out)
			return 1
		},
		// close is kumogo's: KumoMTA's stream closes when collected
		"close": func(L *lua.LState) int {
			s := check(L)
			st.rt.disown(s)
			s.Close()
			return 0
		},
	})
	mt.RawSetString("__index", methods)
	t.RawSetString("connect_websocket", L.NewFunction(func(L *lua.LState) int {
		raw := L.CheckString(1)
		s, resp, err := dialWebSocket(st.callCtx(), raw)
		if err != nil {
			L.RaiseError("kumo.http.connect_websocket %s: %s", raw, err.Error())
		}
		st.rt.own(s) // closed with the runtime at the latest
		L.Push(&lua.LUserData{Value: s, Metatable: mt})
		L.Push(&lua.LUserData{Value: resp, Metatable: respMT})
		return 2
	}))
}
