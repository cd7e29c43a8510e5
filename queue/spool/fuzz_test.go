package spool

import (
	"bytes"
	"testing"

	"github.com/kumogo/kumogo/internal/message"
)

// FuzzDecodeMeta feeds arbitrary meta records to the decoder used at
// restart: it must never panic, and whatever it accepts must survive
// encoding and decoding again unchanged, so that a message requeued after a
// restart is stored exactly as it was read.
func FuzzDecodeMeta(f *testing.F) {
	for _, seed := range []string{
		`{"sender":"a@x.example","recipient":"b@y.example","meta":{"queue":"q"},"schedule":null}`,
		`{"sender":"","recipient":["b@y.example","\"odd one\"@y.example"],"meta":{"n":1,"t":[1,"x",{"k":null}]},"schedule":null}`,
		`{"sender":"a@x.example","recipient":"b@[10.0.0.1]","meta":{},"schedule":{"dow":"Mon,Tue","tz":"Europe/Berlin","start":"09:00:00","end":"17:00:00","first_attempt":"2026-11-28T10:00:00Z","expires":"2026-12-01T00:00:00Z"}}`,
		`{"sender":"a@x.example","recipient":"b","meta":null}`,
		`{"sender":"a@x.example","recipient":[],"meta":{}}`,
		`{"sender":"a@x.example","recipient":null}`,
		`{"sender":"a@x.example","recipient":"b@y.example"} trailing`,
		`{"recipient":"b@y.example","schedule":"soon"}`,
		`[]`,
		``,
	} {
		f.Add([]byte(seed))
	}
	id := message.NewIDGenerator().NewString()
	data := []byte("Subject: x\r\n\r\nbody\r\n")
	f.Fuzz(func(t *testing.T, meta []byte) {
		msg, err := DecodeMessage(id, meta, data)
		if err != nil {
			return
		}
		enc, err := EncodeMeta(msg)
		if err != nil {
			t.Fatalf("decoded %q but cannot encode it: %v", meta, err)
		}
		again, err := DecodeMessage(id, enc, data)
		if err != nil {
			t.Fatalf("cannot decode our own record %s (from %q): %v", enc, meta, err)
		}
		enc2, err := EncodeMeta(again)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(enc, enc2) {
			t.Fatalf("record changed across a round trip:\n%s\n%s", enc, enc2)
		}
		if again.Sender() != msg.Sender() || len(again.Recipients()) != len(msg.Recipients()) {
			t.Fatalf("envelope changed: %v %v -> %v %v", msg.Sender(), msg.Recipients(), again.Sender(), again.Recipients())
		}
		for i, r := range msg.Recipients() {
			if again.Recipients()[i] != r {
				t.Fatalf("recipient %d changed: %#v -> %#v", i, r, again.Recipients()[i])
			}
		}
	})
}

// FuzzStoredAddress checks that every address the SMTP parser accepts is
// written to the meta record in a form that reads back as the same
// address.
func FuzzStoredAddress(f *testing.F) {
	for _, seed := range []string{
		"a@x.example", `"info@"@example.com`, `"a\"b\\c"@x`, "user@[10.0.0.1]", "user@[IPv6:::1]",
		"<a.b@x>", "a..b@x", `" "@x`, "ü@bücher.example", "a@", "@x", "plain",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := message.ParseAddress(s)
		if err != nil || a.IsNull() {
			return
		}
		stored := FormatAddress(a)
		if back := ParseStoredAddress(stored); back != a {
			t.Fatalf("%q parsed as %#v, stored as %q, read back as %#v", s, a, stored, back)
		}
	})
}
