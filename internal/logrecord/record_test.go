package logrecord

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kumogo/kumogo/internal/message"
	"github.com/kumogo/kumogo/internal/smtpreply"
)

var (
	testTS      = time.Date(2024, 3, 5, 7, 8, 9, 123456789, time.UTC)
	testCreated = time.Date(2024, 3, 5, 7, 8, 0, 0, time.UTC)
)

func TestRecordJSONGolden(t *testing.T) {
	tests := []struct {
		name string
		rec  Record
		want string
	}{
		{
			name: "delivery, all fields",
			rec: Record{
				Type: Delivery, ID: "0123456789abcdef0123456789abcdef", Sender: "s@example.com",
				Recipient: []string{"r@example.org"}, Queue: "camp:ten@example.org", Site: "src->mx.example.org@smtp_client",
				Size: 1234,
				Response: smtpreply.Response{Code: 250, Enhanced: &smtpreply.EnhancedCode{Class: 2, Subject: 0, Detail: 0},
					Content: "OK \"queued\"\tas <x&y>", Command: ".\r\n"},
				PeerAddress: &PeerAddress{Name: "mx.example.org.", Addr: "10.0.0.9:25"},
				Timestamp:   testTS, Created: testCreated, NumAttempts: 1,
				EgressPool: "pool", EgressSource: "src",
				SourceAddress:    &SourceAddress{Address: "10.0.0.1:40000"},
				FeedbackReport:   json.RawMessage(`{"k":1}`),
				Meta:             map[string]any{"z": 1.5, "a": []any{"x", true, nil}},
				Headers:          map[string]any{"Subject": "hi"},
				DeliveryProtocol: "ESMTP", ReceptionProtocol: "ESMTP", NodeID: "node-1",
				TLSCipher: "TLS_AES_128_GCM_SHA256", TLSProtocolVersion: "TLSv1.3", TLSPeerSubjectName: "CN=mx",
				ProviderName: "prov", SessionID: "sess",
			},
			want: `{"type":"Delivery","id":"0123456789abcdef0123456789abcdef","sender":"s@example.com",` +
				`"recipient":"r@example.org","queue":"camp:ten@example.org","site":"src->mx.example.org@smtp_client","size":1234,` +
				`"response":{"code":250,"enhanced_code":{"class":2,"subject":0,"detail":0},"content":"OK \"queued\"\tas <x&y>","command":".\r\n"},` +
				`"peer_address":{"name":"mx.example.org.","addr":"10.0.0.9:25"},` +
				`"timestamp":1709622489,"event_time":"2024-03-05T07:08:09.123456789Z",` +
				`"created":1709622480,"created_time":"2024-03-05T07:08:00Z","num_attempts":1,` +
				`"bounce_classification":"Uncategorized","egress_pool":"pool","egress_source":"src",` +
				`"source_address":{"address":"10.0.0.1:40000"},"feedback_report":{"k":1},` +
				`"meta":{"a":["x",true,null],"z":1.5},"headers":{"Subject":"hi"},` +
				`"delivery_protocol":"ESMTP","reception_protocol":"ESMTP","nodeid":"node-1",` +
				`"tls_cipher":"TLS_AES_128_GCM_SHA256","tls_protocol_version":"TLSv1.3","tls_peer_subject_name":"CN=mx",` +
				`"provider_name":"prov","session_id":"sess"}`,
		},
		{
			name: "minimal, nulls and omissions",
			rec: Record{Type: Bounce, ID: "id", Recipient: []string{"a@x", "b@x"}, Timestamp: testTS,
				Response: smtpreply.Response{Code: 550, Content: "no"}, BounceClassification: "InvalidRecipient"},
			want: `{"type":"Bounce","id":"id","sender":"","recipient":["a@x","b@x"],"queue":"","site":"","size":0,` +
				`"response":{"code":550,"enhanced_code":null,"content":"no","command":null},"peer_address":null,` +
				`"timestamp":1709622489,"event_time":"2024-03-05T07:08:09.123456789Z",` +
				`"created":1709622489,"created_time":"2024-03-05T07:08:09.123456789Z","num_attempts":0,` +
				`"bounce_classification":"InvalidRecipient","egress_pool":null,"egress_source":null,` +
				`"source_address":null,"feedback_report":null,"meta":{},"headers":{},` +
				`"delivery_protocol":null,"reception_protocol":null,"nodeid":""}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := string(tt.rec.AppendJSON(nil))
			if got != tt.want {
				t.Fatalf("got\n%s\nwant\n%s", got, tt.want)
			}
			if !json.Valid([]byte(got)) {
				t.Fatal("invalid JSON")
			}
			var sb strings.Builder
			enc := json.NewEncoder(&sb)
			enc.SetEscapeHTML(false) // json.Marshal would turn <>& into \u escapes
			if err := enc.Encode(tt.rec); err != nil || sb.String() != tt.want+"\n" {
				t.Fatalf("json encoder = %s, %v", sb.String(), err)
			}
			var back Record
			if err := json.Unmarshal([]byte(got), &back); err != nil {
				t.Fatal(err)
			}
			if again := string(back.AppendJSON(nil)); again != got {
				t.Fatalf("round trip changed the record:\n%s", again)
			}
		})
	}
}

func TestStringEscaping(t *testing.T) {
	for _, s := range []string{"plain", "quote\" back\\ nl\n cr\r tab\t", "\x00\x01\x1f", "ünï ✓ 😀", "bad \xff utf8", "<&>\u2028"} {
		got := appendString(nil, s)
		var back string
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatalf("%q -> %s: %v", s, got, err)
		}
		want := strings.ToValidUTF8(s, "\ufffd")
		if back != want {
			t.Errorf("%q -> %s -> %q", s, got, back)
		}
		if b := appendString(nil, []byte(s)); string(b) != string(got) {
			t.Errorf("[]byte variant differs: %s vs %s", b, got)
		}
	}
}

func TestAppendAny(t *testing.T) {
	tests := []struct {
		v    any
		want string
	}{
		{nil, "null"}, {"s", `"s"`}, {true, "true"}, {int64(-3), "-3"}, {42, "42"}, {uint8(7), "7"},
		{1.0, "1"}, {2.5, "2.5"}, {1e21, "1e+21"}, {1e-7, "1e-7"}, {float32(0.1), "0.1"},
		{json.Number("12.50"), "12.50"},
		{[]any{1, "a", []string{"b"}}, `[1,"a",["b"]]`},
		{map[string]any{"b": 1, "a": map[string]string{"y": "z"}}, `{"a":{"y":"z"},"b":1}`},
		{struct {
			X int `json:"x"`
		}{3}, `{"x":3}`},
	}
	for _, tt := range tests {
		if got := string(appendAny(nil, tt.v)); got != tt.want {
			t.Errorf("appendAny(%#v) = %s, want %s", tt.v, got, tt.want)
		}
		if std, err := json.Marshal(tt.v); err == nil && !reflect.DeepEqual(decodeAny(t, std), decodeAny(t, []byte(tt.want))) {
			t.Errorf("%#v: encoding/json says %s", tt.v, std)
		}
	}
}

func decodeAny(t *testing.T, b []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return v
}

func TestTypeNames(t *testing.T) {
	want := "Reception Delivery Bounce TransientFailure Expiration AdminBounce OOB Feedback Rejection AdminRebind DeferredInjectionRebind Delayed XferOut XferIn"
	var names []string
	for ty := Type(0); ty < numTypes; ty++ {
		names = append(names, ty.String())
		back, err := ParseType(ty.String())
		if err != nil || back != ty {
			t.Errorf("ParseType(%q) = %v, %v", ty, back, err)
		}
	}
	if got := strings.Join(names, " "); got != want {
		t.Fatalf("names = %s", got)
	}
	if _, err := ParseType("Any"); err == nil {
		t.Error("Any is not a record type")
	}
}

func testMessage(t testing.TB) *message.Message {
	t.Helper()
	data := "Received: from x\r\n" +
		"Subject: =?utf-8?q?caf=C3=A9?=\r\n" +
		"X-Campaign: c1\r\n" +
		"x-tag: one\r\n" +
		"X-Folded: a\r\n b\r\n" +
		"x-tag: two\r\n" +
		"From: a@example.com\r\n" +
		"\r\n" +
		"X-Body: not a header\r\n"
	m, err := message.Restore("0123456789ab11ef8123456789abcdef",
		message.Address{User: "sender", Domain: "example.com"},
		[]message.Address{{User: "rcpt", Domain: "example.org"}},
		map[string]any{"tenant": "t1", "campaign": "c1", "x_one": 1.0, "x_two": "2", "X_upper": "no", "reception_protocol": "ESMTP",
			"tls_cipher": "TLS_AES_128_GCM_SHA256", "tls_protocol_version": "TLSv1.3"},
		[]byte(data))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestEncodeFromMessageWithSelection(t *testing.T) {
	m := testMessage(t)
	e := recordEncoder{
		msg:     m,
		metaSel: newSelector([]string{"x_*", "tenant", "missing"}, false),
		hdrSel:  newSelector([]string{"subject", "X-*"}, true),
		nodeID:  "node",
	}
	rec := Record{Type: Reception, Timestamp: testTS, Response: smtpreply.Response{Code: 250},
		PeerAddress: &PeerAddress{Name: "ehlo.example", Addr: "10.0.0.1"}, Meta: map[string]any{"tenant": "override"}}
	got := string(e.append(nil, &rec))
	var obj map[string]any
	if err := json.Unmarshal([]byte(got), &obj); err != nil {
		t.Fatalf("%s: %v", got, err)
	}
	want := map[string]any{
		"id": "0123456789ab11ef8123456789abcdef", "sender": "sender@example.com", "recipient": "rcpt@example.org",
		"queue": "c1:t1@example.org", "size": float64(len(m.Data())), "nodeid": "node", "reception_protocol": "ESMTP",
		"tls_cipher": "TLS_AES_128_GCM_SHA256", "tls_protocol_version": "TLSv1.3",
		"meta":    map[string]any{"tenant": "override", "x_one": 1.0, "x_two": "2"},
		"headers": map[string]any{"Subject": "café", "X-Campaign": "c1", "x-tag": "two", "X-Folded": "a b"},
	}
	for k, v := range want {
		if !reflect.DeepEqual(obj[k], v) {
			t.Errorf("%s = %#v, want %#v", k, obj[k], v)
		}
	}
	if _, ok := obj["tls_peer_subject_name"]; ok {
		t.Error("empty tls_peer_subject_name must be omitted")
	}
	created, _ := message.IDTime(m.ID())
	if obj["created"] != float64(created.Unix()) {
		t.Errorf("created = %v, want %v", obj["created"], created.Unix())
	}
	// headers keep message order
	if i, j := strings.Index(got, `"Subject"`), strings.Index(got, `"x-tag"`); i < 0 || j < i {
		t.Errorf("header order: %s", got)
	}

	// explicit record fields win over the message
	rec2 := Record{Type: Delivery, ID: "other", Sender: "", Recipient: []string{"a@b", "c@d"}, Queue: "q", Size: 7, Timestamp: testTS}
	e.metaSel, e.hdrSel = nil, nil
	var obj2 map[string]any
	if err := json.Unmarshal(e.append(nil, &rec2), &obj2); err != nil {
		t.Fatal(err)
	}
	if obj2["id"] != "other" || obj2["sender"] != "" || obj2["queue"] != "q" || obj2["size"] != 7.0 ||
		!reflect.DeepEqual(obj2["recipient"], []any{"a@b", "c@d"}) || !reflect.DeepEqual(obj2["meta"], map[string]any{}) ||
		!reflect.DeepEqual(obj2["headers"], map[string]any{}) {
		t.Errorf("explicit fields: %v", obj2)
	}
	if _, ok := obj2["tls_cipher"]; ok {
		t.Error("tls fields are only taken from meta for Reception")
	}
}

func TestSelector(t *testing.T) {
	tests := []struct {
		patterns []string
		fold     bool
		name     string
		want     bool
	}{
		{[]string{"x_*"}, false, "x_campaign", true},
		{[]string{"x_*"}, false, "X_campaign", false},
		{[]string{"x_*"}, false, "x_", true},
		{[]string{"x_*"}, false, "x", false},
		{[]string{"tenant"}, false, "Tenant", false},
		{[]string{"tenant"}, false, "tenant", true},
		{[]string{"*"}, false, "anything", true},
		{[]string{"X-*"}, true, "x-mailer", true},
		{[]string{"Subject"}, true, "SUBJECT", true},
		{[]string{"Subject"}, true, "Subjects", false},
	}
	for _, tt := range tests {
		s := newSelector(tt.patterns, tt.fold)
		if got := s.matchString(tt.name); got != tt.want {
			t.Errorf("%v match %q = %v", tt.patterns, tt.name, got)
		}
		if got := s.matchBytes([]byte(tt.name)); got != tt.want {
			t.Errorf("%v matchBytes %q = %v", tt.patterns, tt.name, got)
		}
	}
}
