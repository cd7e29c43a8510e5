package runtime

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// startNATS runs an embedded NATS server with JetStream on loopback.
func startNATS(t *testing.T, token string) *server.Server {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), Authorization: token, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	t.Cleanup(s.Shutdown)
	return s
}

func TestNATSPublish(t *testing.T) {
	s := startNATS(t, "sekrit")
	nc, err := nats.Connect(s.ClientURL(), nats.Token("sekrit"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "LOGS", Subjects: []string{"logs.>"}})
	if err != nil {
		t.Fatal(err)
	}
	sub, err := nc.SubscribeSync("logs.core")
	if err != nil {
		t.Fatal(err)
	}
	nc.Flush()
	r := newRuntime(t, `
local kumo = require 'kumo'
kumo.on('t', function(url, token)
  local c = kumo.nats.connect { servers = { url }, name = 'kumogo-test', auth = { token = { key_data = token } } }
  for i = 1, 3 do
    c:publish { subject = 'logs.acked', payload = 'record ' .. i, headers = { ['Nats-Msg-Id'] = 'id' .. i }, await_ack = true }
  end
  c:publish { subject = 'logs.core', payload = 'plain' }
  c:close()
  return 'ok'
end)
kumo.on('bad', function(url, token)
  return kumo.nats.connect { servers = { url }, auth = { token = { key_data = token } }, connection_timeout = '1s' }
end)
`)
	url := strings.TrimPrefix(s.ClientURL(), "nats://")
	if out := run(t, r, url, "sekrit"); out[0] != "ok" {
		t.Fatal(out)
	}
	var info *jetstream.StreamInfo
	for i := 0; i < 100; i++ {
		if info, err = stream.Info(ctx); err != nil || info.State.Msgs == 4 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil || info.State.Msgs != 4 { // 3 acked + the core publish (logs.core is in the stream too)
		t.Fatalf("stream holds %v messages: %v", info.State.Msgs, err)
	}
	m, err := sub.NextMsg(5 * time.Second)
	if err != nil || string(m.Data) != "plain" {
		t.Fatalf("core publish: %v %v", m, err)
	}
	msg, err := stream.GetMsg(ctx, 1)
	if err != nil || string(msg.Data) != "record 1" || msg.Header.Get("Nats-Msg-Id") != "id1" {
		t.Fatalf("first stored message: %+v %v", msg, err)
	}
	// a wrong token is a Lua error naming the call, not a crash
	if _, err := r.Call(context.Background(), "bad", url, "wrong"); err == nil || !strings.Contains(err.Error(), "kumo.nats.connect") {
		t.Fatalf("bad token: %v", err)
	}
	if _, err := r.Call(context.Background(), "bad", "127.0.0.1:1", "x"); err == nil || !strings.Contains(err.Error(), "kumo.nats.connect") {
		t.Fatalf("refused: %v", err)
	}
}
