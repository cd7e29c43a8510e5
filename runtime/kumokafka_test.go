package runtime

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestKafkaProducer sends through kumo.kafka to franz-go's fake Kafka
// cluster (kfake, in process on loopback) and reads the records back.
func TestKafkaProducer(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "logs"), kfake.ListenFn(func(network, _ string) (net.Listener, error) { return net.Listen(network, "127.0.0.1:0") }))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	seeds := strings.Join(c.ListenAddrs(), ",")
	r := newRuntime(t, `
local kumo = require 'kumo'
kumo.on('t', function(seeds)
  local p = kumo.kafka.build_producer { ['bootstrap.servers'] = seeds, ['client.id'] = 'kumogo-test' }
  local partition, offset = p:send { topic = 'logs', payload = 'one', key = 'k', headers = { h = 'v' }, timeout = '10s' }
  local failed, errors = p:send_batch {
    { topic = 'logs', payload = 'two' },
    { topic = 'logs', payload = 'three' },
  }
  p:close()
  return partition, offset, #failed
end)
kumo.on('bad', function(seeds)
  return kumo.kafka.build_producer { ['bootstrap.servers'] = seeds, ['sasl.mechanism'] = 'PLAIN' }
end)
kumo.on('down', function(seeds)
  local p = kumo.kafka.build_producer { ['bootstrap.servers'] = seeds }
  return p:send { topic = 'logs', payload = 'x', timeout = '1s' }
end)
`)
	out := run(t, r, seeds)
	if out[0] != int64(0) || out[1] != int64(0) || out[2] != int64(0) {
		t.Fatalf("send results %#v", out)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics("logs"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var got []string
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for len(got) < 3 && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(rec *kgo.Record) {
			got = append(got, string(rec.Value))
			if string(rec.Value) == "one" && (string(rec.Key) != "k" || len(rec.Headers) != 1 || rec.Headers[0].Key != "h") {
				t.Errorf("record one: key %q headers %v", rec.Key, rec.Headers)
			}
		})
	}
	if strings.Join(got, ",") != "one,two,three" {
		t.Fatalf("consumed %v", got)
	}
	if _, err := r.Call(context.Background(), "bad", seeds); err == nil || !strings.Contains(err.Error(), "unsupported properties sasl.mechanism") {
		t.Fatalf("bad property: %v", err)
	}
	// a broker that is gone: a Lua error within the timeout, not a hang
	start := time.Now()
	if _, err := r.Call(context.Background(), "down", "127.0.0.1:1"); err == nil || !strings.Contains(err.Error(), "kumo.kafka: send to logs") {
		t.Fatalf("down: %v", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Fatalf("send to a dead broker took %v", time.Since(start))
	}
}
