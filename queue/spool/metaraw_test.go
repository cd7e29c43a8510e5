package spool

import (
	"encoding/json"
	"testing"

	"github.com/kumogo/kumogo/internal/message"
)

// TestMetaRecordWithRawValue: a message whose meta holds a
// json.RawMessage (a log record's log_record) gets the same meta record
// bytes as json.Marshal writes for it, and reads back with the value
// decoded.
func TestMetaRecordWithRawValue(t *testing.T) {
	raw := json.RawMessage(`{"type":"Reception","id":"abc","timestamp":1700000000,"headers":{"Subject":"s \"q\""},"recipient":["r@x.example"]}`)
	msg := message.New(message.NewIDGenerator(), message.Address{User: "s", Domain: "src.example"},
		[]message.Address{{User: "a", Domain: "x.example"}, {User: "b", Domain: "x.example"}}, []byte("body"))
	msg.SetMeta("log_record", raw)
	msg.SetMeta("reception_protocol", "LogRecord")
	msg.SetMeta("queue", "webhook")
	msg.SetMeta("n", 3)
	msg.SetMeta("list", []any{"x", 1.5, map[string]any{"k": "<v>"}})
	got, err := EncodeMeta(msg)
	if err != nil {
		t.Fatal(err)
	}
	rj, _ := json.Marshal([]string{"a@x.example", "b@x.example"})
	want, err := json.Marshal(metaRecord{Sender: "s@src.example", Recipient: rj, Meta: msg.MetaMap()})
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Fatalf("meta record\n got %s\nwant %s", got, want)
	}
	back, err := DecodeMessage(msg.ID(), got, []byte("body"))
	if err != nil {
		t.Fatal(err)
	}
	rec, _ := back.Meta("log_record")
	if m, ok := rec.(map[string]any); !ok || m["id"] != "abc" {
		t.Fatalf("log_record read back: %#v", rec)
	}
}
