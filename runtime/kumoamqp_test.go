package runtime

import (
	"context"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/kumogo/kumogo/internal/testutil"
)

// TestAMQPAgainstRabbitMQ: kumo.amqp.basic_publish (pooled connections,
// publisher confirms, basic properties and headers) and the deprecated
// build_client/publish/wait/close, against a real RabbitMQ on loopback;
// a consumer reads back what was published. A refused connection, an
// unroutable mandatory message and a bad option are Lua errors naming the
// call.
func TestAMQPAgainstRabbitMQ(t *testing.T) {
	rmq := testutil.StartRabbitMQ(t)
	conn, err := amqp.Dial(rmq.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"logging", "legacy"} {
		if _, err := ch.QueueDeclare(q, false, false, false, false, nil); err != nil {
			t.Fatal(err)
		}
	}
	r := newRuntime(t, `
local kumo = require 'kumo'
kumo.on('t', function(host, port, url)
  for i = 1, 5 do
    kumo.amqp.basic_publish {
      routing_key = 'logging',
      payload = 'record ' .. i,
      content_type = 'application/json',
      message_id = 'm' .. i,
      delivery_mode = 2,
      priority = 3,
      timestamp = 1700000000,
      headers = { tenant = 'acme', n = i, nested = { ok = true } },
      connection = { host = host, port = port, connection_name = 'kumogo-test', pool_size = 2, publish_timeout = '5s' },
    }
  end
  local client = kumo.amqp.build_client(url)
  local confirm = client:publish { routing_key = 'legacy', payload = 'w00t!' }
  local result = confirm:wait()
  assert(result.status == 'NotRequested', result.status)
  client:close()
  local ok, err = pcall(function() client:close() end)
  assert(not ok, 'second close must fail')
  return 'ok'
end)
kumo.on('refused', function(port)
  kumo.amqp.basic_publish { routing_key = 'x', payload = 'y', connection = { host = '127.0.0.1', port = port, connect_timeout = '2s' } }
end)
kumo.on('unroutable', function(host, port)
  kumo.amqp.basic_publish { routing_key = 'no-such-queue', payload = 'y', mandatory = true, connection = { host = host, port = port } }
end)
kumo.on('badopt', function(host, port)
  kumo.amqp.basic_publish { routing_key = 'x', payload = 'y', colour = 'red', connection = { host = host, port = port } }
end)
`)
	if out := run(t, r, "127.0.0.1", rmq.Port(), rmq.URL()); out[0] != "ok" {
		t.Fatal(out)
	}
	get := func(q string) amqp.Delivery {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			d, ok, err := ch.Get(q, true)
			if err != nil {
				t.Fatal(err)
			}
			if ok {
				return d
			}
			if time.Now().After(deadline) {
				t.Fatalf("nothing in queue %s", q)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	for i := 1; i <= 5; i++ {
		d := get("logging")
		if want := "record " + string(rune('0'+i)); string(d.Body) != want {
			t.Fatalf("message %d: body %q, want %q", i, d.Body, want)
		}
		if d.ContentType != "application/json" || d.MessageId != "m"+string(rune('0'+i)) || d.DeliveryMode != 2 || d.Priority != 3 ||
			d.Timestamp.Unix() != 1700000000 || d.Headers["tenant"] != "acme" {
			t.Fatalf("message %d properties: %+v", i, d)
		}
		if nested, _ := d.Headers["nested"].(amqp.Table); nested["ok"] != true {
			t.Fatalf("nested header: %#v", d.Headers["nested"])
		}
	}
	if d := get("legacy"); string(d.Body) != "w00t!" {
		t.Fatalf("build_client publish: %q", d.Body)
	}
	ctx := context.Background()
	// a port nothing listens on
	_, err = r.Call(ctx, "refused", 1)
	if err == nil || !strings.Contains(err.Error(), "kumo.amqp.basic_publish") || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("refused connection: %v", err)
	}
	_, err = r.Call(ctx, "unroutable", "127.0.0.1", rmq.Port())
	if err == nil || !strings.Contains(err.Error(), "NO_ROUTE") {
		t.Fatalf("unroutable mandatory message: %v", err)
	}
	_, err = r.Call(ctx, "badopt", "127.0.0.1", rmq.Port())
	if err == nil || !strings.Contains(err.Error(), "colour") {
		t.Fatalf("unknown option: %v", err)
	}
}
