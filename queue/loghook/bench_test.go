package loghook

import (
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/logrecord"
	"github.com/kumogo/kumogo/internal/message"
	"github.com/kumogo/kumogo/queue/spool"
)

// BenchmarkRecordMessage is the hook's own cost per record, in process:
// the record encoded by Log, turned into its message and the message's
// spool meta record encoded (what a spooled record costs besides the
// policy event and the disk).
func BenchmarkRecordMessage(b *testing.B) {
	cfg := config.DefaultLogHook()
	cfg.Name = "webhook"
	cfg.Headers = []string{"Subject"}
	h, err := New(cfg, &fakePolicy{keep: func(*message.Message) bool { return true }}, message.NewIDGenerator(), "node", zerolog.Nop())
	if err != nil {
		b.Fatal(err)
	}
	r := rec(logrecord.Reception, "0123456789abcdef0123456789abcdef", "ESMTP")
	r.Headers = map[string]any{"Subject": "a subject of some length"}
	r.Created = time.Unix(1699999990, 0)
	b.ReportAllocs()
	for b.Loop() {
		j := job{typ: r.Type, data: h.enc.Append(make([]byte, 0, 512), r, nil), sender: r.Sender, recipients: r.Recipient}
		msg, err := h.message(j)
		if err != nil {
			b.Fatal(err)
		}
		msg.SetMeta("queue", "webhook")
		if _, err := spool.EncodeMeta(msg); err != nil {
			b.Fatal(err)
		}
	}
}
