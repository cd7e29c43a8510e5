package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/kumogo/kumogo/internal/testutil"
)

// sendParallel sends n messages over `sessions` concurrent SMTP sessions
// (recipient u<i>@example.com, Subject s<i>), so that the spool's group
// commit covers several of them.
func sendParallel(t *testing.T, addr string, n, sessions int) {
	t.Helper()
	var wg sync.WaitGroup
	per := n / sessions
	for s := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			base := s * per
			sendMessages(t, addr, per, func(i int) string { return fmt.Sprintf("u%d@example.com", base+i) }, func(i int) string { return fmt.Sprint("s", base+i) })
		}()
	}
	wg.Wait()
}

// TestLogHookAMQPDeliversEveryRecordOnce: the AMQP pattern of KumoMTA's
// "Routing Messages via AMQP" guide (a log hook, a custom_lua make.amqp
// whose send calls kumo.amqp.basic_publish) against a real RabbitMQ: the
// 1,000 messages of a run, delivered to a maildir, give 2,000 records
// (Reception and Delivery) that a consumer reads from the broker, each
// exactly once.
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

	dir := t.TempDir()
	policy := spooledPolicy(t, dir, `
  kumo.start_esmtp_listener { listen = '127.0.0.1:0', hostname = 'hooks.test', relay_hosts = { '127.0.0.1' } }
  kumo.configure_log_hook { name = 'amqp' }`, fmt.Sprintf(`
kumo.on('should_enqueue_log_record', function(msg, hook_name)
  msg:set_meta('queue', hook_name)
  return true
end)
kumo.on('make.amqp', function(domain, tenant, campaign)
  local sender = {}
  function sender:send(message)
    kumo.amqp.basic_publish {
      routing_key = 'kumogo-logs',
      payload = message:get_data(),
      content_type = 'application/json',
      delivery_mode = 2,
      connection = { host = '127.0.0.1', port = %d, pool_size = 8 },
    }
    return '250 ok'
  end
  function sender:close() end
  return sender
end)
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  if domain == 'amqp' then
    return kumo.make_queue_config { retry_interval = '1s', max_retry_interval = '2s', protocol = { custom_lua = { constructor = 'make.amqp' } } }
  end
  return kumo.make_queue_config { protocol = { maildir_path = '%s/maildir' } }
end)
`, rmq.Port(), dir))
	d := startDaemon(t, nil, "--policy", policy)
	const n = 1000
	start := time.Now()
	sendParallel(t, d.addr, n, 4)
	seen := map[string]int{}
	byType := map[string]int{}
	deadline := time.After(120 * time.Second)
	for byType["Reception"] < n || byType["Delivery"] < n {
		select {
		case m := <-deliveries:
			var rec struct {
				Type      string `json:"type"`
				ID        string `json:"id"`
				Recipient any    `json:"recipient"`
			}
			if err := json.Unmarshal(m.Body, &rec); err != nil {
				t.Fatalf("not a JSON record: %v: %q", err, m.Body)
			}
			byType[rec.Type]++
			seen[fmt.Sprint(rec.Type, rec.ID, rec.Recipient)]++
		case <-deadline:
			t.Fatalf("after 120 s the broker had %v\n%s", byType, tail(d.log(), 40))
		}
	}
	took := time.Since(start)
	// anything extra would arrive now
	quiet := time.After(time.Second)
drain:
	for {
		select {
		case m := <-deliveries:
			var rec map[string]any
			json.Unmarshal(m.Body, &rec)
			byType[fmt.Sprint(rec["type"])]++
			seen[fmt.Sprint(rec["type"], rec["id"], rec["recipient"])]++
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
	t.Logf("%d records through AMQP in %v", 2*n, took.Round(time.Millisecond))
	d.stop(t, syscall.SIGTERM)
}
