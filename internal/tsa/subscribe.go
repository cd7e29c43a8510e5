package tsa

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// Websocket subscriptions (tsa-daemon.openapi.json): GET
// /subscribe_event_v1 streams SubscriptionItems, one JSON text message
// each, {"ReadyQSuspension": {...}}, {"SchedQSuspension": {...}} or
// {"SchedQBounce": {...}}; the legacy /subscribe_suspension_v1 streams
// {"ReadyQ": {...}} and {"SchedQ": {...}} only. A new subscriber first
// gets every effect in force, then each new or extended one as the rules
// produce it, which is how KumoMTA's nodes learn of them in real time.

// subBuffer is how many items a subscriber may fall behind by before it
// is dropped (it reconnects and gets the whole state again).
const subBuffer = 4096

// writeTimeout bounds one websocket write to a subscriber.
const writeTimeout = 10 * time.Second

// subscriber is one websocket subscription.
type subscriber struct {
	legacy bool
	ch     chan []byte
}

// hub fans effects out to the subscribers.
type hub struct {
	mu   sync.Mutex
	subs map[*subscriber]struct{}
}

func (h *hub) add(s *subscriber) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.subs == nil {
		h.subs = map[*subscriber]struct{}{}
	}
	h.subs[s] = struct{}{}
}

func (h *hub) remove(s *subscriber) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.subs[s]; ok {
		delete(h.subs, s)
		close(s.ch)
	}
}

// Subscribers is the number of websocket subscriptions open.
func (d *Daemon) Subscribers() int {
	d.hub.mu.Lock()
	defer d.hub.mu.Unlock()
	return len(d.hub.subs)
}

// item encodes an effect as the subscription message of its kind: the
// event endpoint's and the legacy endpoint's (nil when the legacy one has
// no such kind).
func item(v any) (event, legacy []byte) {
	var kind, old string
	switch v.(type) {
	case ReadyQSuspension:
		kind, old = "ReadyQSuspension", "ReadyQ"
	case SchedQSuspension:
		kind, old = "SchedQSuspension", "SchedQ"
	case SchedQBounce:
		kind = "SchedQBounce"
	}
	event, _ = json.Marshal(map[string]any{kind: v})
	if old != "" {
		legacy, _ = json.Marshal(map[string]any{old: v})
	}
	return event, legacy
}

// broadcast sends a new or extended effect to every subscriber; one that
// has fallen subBuffer items behind is dropped.
func (h *hub) broadcast(v any) {
	event, legacy := item(v)
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		msg := event
		if s.legacy {
			msg = legacy
		}
		if msg == nil {
			continue
		}
		select {
		case s.ch <- msg:
		default:
			delete(h.subs, s)
			close(s.ch)
		}
	}
}

// subscribe serves one websocket subscription.
func (d *Daemon) subscribe(legacy bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return // Accept answered the request
		}
		defer c.CloseNow()
		// Registered before the snapshot is read, so that nothing
		// produced meanwhile is missed (an item may come twice; nodes
		// apply an effect again harmlessly).
		s := &subscriber{legacy: legacy, ch: make(chan []byte, subBuffer)}
		d.hub.add(s)
		defer d.hub.remove(s)
		ctx := c.CloseRead(context.Background())
		var snapshot []any
		sus, err := d.store.Suspensions(ctx, d.now())
		if err != nil {
			c.Close(websocket.StatusInternalError, "reading suspensions")
			return
		}
		for _, v := range sus.ReadyQ {
			snapshot = append(snapshot, v)
		}
		for _, v := range sus.SchedQ {
			snapshot = append(snapshot, v)
		}
		if !legacy {
			bounces, err := d.store.Bounces(ctx, d.now())
			if err != nil {
				c.Close(websocket.StatusInternalError, "reading bounces")
				return
			}
			for _, v := range bounces {
				snapshot = append(snapshot, v)
			}
		}
		send := func(msg []byte) bool {
			wctx, cancel := context.WithTimeout(ctx, writeTimeout)
			defer cancel()
			return c.Write(wctx, websocket.MessageText, msg) == nil
		}
		for _, v := range snapshot {
			event, old := item(v)
			if legacy {
				event = old
			}
			if !send(event) {
				return
			}
		}
		for {
			select {
			case msg, ok := <-s.ch:
				if !ok {
					c.Close(websocket.StatusTryAgainLater, "subscriber fell behind")
					return
				}
				if !send(msg) {
					return
				}
			case <-ctx.Done():
				return
			case <-d.done:
				c.Close(websocket.StatusGoingAway, "tsa-daemon stopping")
				return
			}
		}
	}
}
