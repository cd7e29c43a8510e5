package tsa

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// wsRead reads one subscription item as kind → fields.
func wsRead(t *testing.T, c *websocket.Conn) map[string]map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	typ, b, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("reading the subscription: %v", err)
	}
	if typ != websocket.MessageText {
		t.Fatalf("message type %v", typ)
	}
	var m map[string]map[string]any
	if err := json.Unmarshal(b, &m); err != nil || len(m) != 1 {
		t.Fatalf("item %s: %v", b, err)
	}
	return m
}

func wsDial(t *testing.T, url string) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, strings.Replace(url, "http", "ws", 1), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CloseNow() })
	return c
}

// TestSubscribeEvents: /subscribe_event_v1 first sends every effect in
// force (KumoMTA's SubscriptionItem shapes), then pushes each new one as
// a rule produces it; /subscribe_suspension_v1 sends the legacy
// ReadyQ/SchedQ shapes and no bounces.
func TestSubscribeEvents(t *testing.T) {
	f := newFixture(t, "")
	// in force before the subscription: a ready queue suspension
	f.publish(failure("a@rolled.example", "mx.rolled.example", "ip-1", "421", "4.7.28", "mx.rolled.example rate limited"))
	ev := wsDial(t, f.url+"/subscribe_event_v1")
	legacy := wsDial(t, f.url+"/subscribe_suspension_v1")
	first := wsRead(t, ev)["ReadyQSuspension"]
	if first == nil || first["site_name"] != "mx.rolled.example" || first["source"] != "ip-1" ||
		first["reason"] != "421 4.7.28 mx.rolled.example rate limited" || first["rule_hash"] == "" || first["expires"] == nil {
		t.Fatalf("snapshot item %v", first)
	}
	if old := wsRead(t, legacy)["ReadyQ"]; old == nil || old["site_name"] != "mx.rolled.example" {
		t.Fatalf("legacy snapshot item %v", old)
	}
	waitSubs := time.Now().Add(5 * time.Second)
	for f.d.Subscribers() != 2 && time.Now().Before(waitSubs) {
		time.Sleep(10 * time.Millisecond)
	}
	// pushed as they happen: a tenant suspension (and its campaign
	// variant), then a bounce
	f.publish(failure("x@plain.example", "mx.plain.example", "ip-2", "451", "4.7.1", "not authenticated"))
	for range 2 {
		sq := wsRead(t, ev)["SchedQSuspension"]
		if sq == nil || sq["tenant"] != "tenant1" || sq["domain"] != "plain.example" {
			t.Fatalf("pushed item %v", sq)
		}
		if old := wsRead(t, legacy)["SchedQ"]; old == nil || old["tenant"] != "tenant1" {
			t.Fatalf("legacy pushed item %v", old)
		}
	}
	f.publish(failure("x@plain.example", "mx.plain.example", "ip-2", "550", "5.1.1", "mailbox gone"))
	// Bounce and BounceCampaign
	for range 2 {
		if b := wsRead(t, ev)["SchedQBounce"]; b == nil || b["domain"] != "plain.example" {
			t.Fatalf("pushed bounce %v", b)
		}
	}
	// the legacy stream has no bounces: nothing more arrives (a Read
	// whose context ends closes the connection)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, b, err := legacy.Read(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("legacy stream sent %s (%v)", b, err)
	}
	// a plain GET is refused (no upgrade)
	resp, err := http.Get(f.url + "/subscribe_event_v1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode < 400 {
		t.Fatalf("GET without upgrade: %d", resp.StatusCode)
	}
	// the daemon stopping ends the subscriptions
	f.d.Close()
	ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	if _, _, err := ev.Read(ctx2); websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Fatalf("after Close: %v", err)
	}
}
