package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kumogo/kumogo/internal/testutil"
)

// sendParallel sends n messages over `sessions` concurrent SMTP sessions
// (recipient u<i>@example.com, Subject subject(i)), so that the spool's
// group commit covers several of them.
func sendParallel(t *testing.T, addr string, n, sessions int, subject func(i int) string) {
	t.Helper()
	var wg sync.WaitGroup
	per := n / sessions
	for s := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			base := s * per
			sendMessages(t, addr, per, func(i int) string { return fmt.Sprintf("u%d@example.com", base+i) }, func(i int) string { return subject(base + i) })
		}()
	}
	wg.Wait()
}

// hookRunMessages is the size of the hook runs: every hook must deliver
// every record of a 1,000-message run exactly once.
const hookRunMessages = 1000

// runHookToBroker runs the pattern of KumoMTA's "Routing Messages via
// AMQP" guide with the publish of one client: a log hook named `name`,
// should_enqueue_log_record queueing every record to it, a custom_lua
// make.<name> whose send runs sendLua (with `payload` holding the
// record), and every other queue delivered to a maildir. It sends
// hookRunMessages messages and reads the records from `records` (the
// test's consumer of the broker) until each Reception and Delivery record
// has arrived, then checks that none arrived twice.
func runHookToBroker(t *testing.T, name, sendLua string, records <-chan []byte) {
	t.Helper()
	dir := t.TempDir()
	// RocksDB spools: a LocalDisk spool's removals of the 3,000 delivered
	// messages would hold the graceful stop for tens of seconds on a busy
	// disk
	policy := filepath.Join(dir, "policy.lua")
	src := fmt.Sprintf(`local kumo = require 'kumo'
kumo.on('init', function()
  kumo.define_spool { name = 'data', path = '%[3]s/data', kind = 'RocksDB' }
  kumo.define_spool { name = 'meta', path = '%[3]s/meta', kind = 'RocksDB' }
  kumo.start_esmtp_listener { listen = '127.0.0.1:0', hostname = 'hooks.test', relay_hosts = { '127.0.0.1' } }
  kumo.configure_log_hook { name = '%[1]s' }
end)
kumo.on('should_enqueue_log_record', function(msg, hook_name)
  msg:set_meta('queue', hook_name)
  return true
end)
kumo.on('make.%[1]s', function(domain, tenant, campaign)
  local sender = {}
  function sender:send(message)
    local payload = message:get_data()
    %[2]s
    return '250 ok'
  end
  function sender:close()
    if self.producer then self.producer:close() end
    if self.client then self.client:close() end
  end
  return sender
end)
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  if domain == '%[1]s' then
    return kumo.make_queue_config { retry_interval = '1s', max_retry_interval = '2s', protocol = { custom_lua = { constructor = 'make.%[1]s' } } }
  end
  return kumo.make_queue_config { protocol = { maildir_path = '%[3]s/maildir' } }
end)
`, name, sendLua, dir)
	if err := os.WriteFile(policy, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, nil, "--policy", policy)
	const n = hookRunMessages
	start := time.Now()
	sendParallel(t, d.addr, n, 4, func(i int) string { return fmt.Sprint("s", i) })
	seen := map[string]int{}
	byType := map[string]int{}
	count := func(body []byte) {
		var rec struct {
			Type      string `json:"type"`
			ID        string `json:"id"`
			Recipient any    `json:"recipient"`
		}
		if err := json.Unmarshal(body, &rec); err != nil {
			t.Fatalf("not a JSON record: %v: %q", err, body)
		}
		byType[rec.Type]++
		seen[fmt.Sprint(rec.Type, " ", rec.ID, " ", rec.Recipient)]++
	}
	deadline := time.After(120 * time.Second)
	for byType["Reception"] < n || byType["Delivery"] < n {
		select {
		case b := <-records:
			count(b)
		case <-deadline:
			t.Fatalf("after 120 s the broker had %v\n%s", byType, tail(d.log(), 40))
		}
	}
	took := time.Since(start)
	quiet := time.After(time.Second) // anything extra would arrive now
drain:
	for {
		select {
		case b := <-records:
			count(b)
		case <-quiet:
			break drain
		}
	}
	for k, c := range seen {
		if c > 1 {
			t.Errorf("record published %d times: %s", c, k)
		}
	}
	if byType["Reception"] != n || byType["Delivery"] != n || len(byType) != 2 {
		t.Fatalf("records: %v", byType)
	}
	if got := readMaildir(t, filepath.Join(dir, "maildir")); len(got) != n {
		t.Fatalf("maildir holds %d messages, want %d", len(got), n)
	}
	t.Logf("%d messages, %d records through %s in %v", n, 2*n, name, took.Round(time.Millisecond))
	d.stop(t, syscall.SIGTERM)
}

// TestLogHookAMQPDeliversEveryRecordOnce: records published with
// kumo.amqp.basic_publish to a real RabbitMQ, read by a consumer.
func TestLogHookAMQPDeliversEveryRecordOnce(t *testing.T) {
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
	if _, err := ch.QueueDeclare("kumogo-logs", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	deliveries, err := ch.Consume("kumogo-logs", "test", true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	records := make(chan []byte)
	go func() {
		for m := range deliveries {
			records <- m.Body
		}
	}()
	runHookToBroker(t, "amqp", fmt.Sprintf(`kumo.amqp.basic_publish {
      routing_key = 'kumogo-logs', payload = payload, content_type = 'application/json', delivery_mode = 2,
      connection = { host = '127.0.0.1', port = %d, pool_size = 8 },
    }`, rmq.Port()), records)
}

// TestLogHookKafkaDeliversEveryRecordOnce: records sent with
// kumo.kafka's producer to franz-go's fake Kafka cluster (kfake, in the
// test process on loopback), read by a franz-go consumer.
func TestLogHookKafkaDeliversEveryRecordOnce(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "kumogo-logs"), kfake.ListenFn(func(network, _ string) (net.Listener, error) { return net.Listen(network, "127.0.0.1:0") }))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics("kumogo-logs"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	records := make(chan []byte, 256)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			fs := cl.PollFetches(ctx)
			cancel()
			fs.EachRecord(func(r *kgo.Record) {
				select {
				case records <- r.Value:
				case <-stop:
				}
			})
		}
	}()
	runHookToBroker(t, "kafka", `if not self.producer then
      self.producer = kumo.kafka.build_producer { ['bootstrap.servers'] = '`+strings.Join(c.ListenAddrs(), ",")+`' }
    end
    self.producer:send { topic = 'kumogo-logs', payload = payload, timeout = '10s' }`, records)
}

// TestLogHookNATSDeliversEveryRecordOnce: records published with
// kumo.nats (JetStream acknowledged) to an embedded nats-server, read by
// a subscriber.
func TestLogHookNATSDeliversEveryRecordOnce(t *testing.T) {
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	defer s.Shutdown()
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := nc.JetStream()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.AddStream(&nats.StreamConfig{Name: "LOGS", Subjects: []string{"logs.>"}}); err != nil {
		t.Fatal(err)
	}
	records := make(chan []byte, 256)
	sub, err := nc.Subscribe("logs.records", func(m *nats.Msg) { records <- m.Data })
	if err != nil {
		t.Fatal(err)
	}
	sub.SetPendingLimits(-1, -1)
	defer sub.Unsubscribe()
	nc.Flush()
	runHookToBroker(t, "nats", `if not self.client then
      self.client = kumo.nats.connect { servers = { '`+s.ClientURL()+`' } }
    end
    self.client:publish { subject = 'logs.records', payload = payload, await_ack = true }`, records)
}
