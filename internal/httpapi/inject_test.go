package httpapi

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"strings"
	"testing"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/message"
	"github.com/kumogo/kumogo/internal/smtpreply"
)

func postInject(t *testing.T, base, body string) (int, string) {
	t.Helper()
	code, b, _ := do(t, nil, "POST", base+"/api/inject/v1", strings.NewReader(body), map[string]string{"Content-Type": "application/json"})
	return code, b
}

func TestInjectStructuredTemplated(t *testing.T) {
	inj := newFakeInjector()
	var auths []map[string]any
	inj.generated = func(msg *message.Message, auth map[string]any) error {
		auths = append(auths, auth)
		msg.SetMeta("queue", "q")
		return nil
	}
	_, base := start(t, config.HTTPListener{}, Deps{Inject: inj})
	code, body := postInject(t, base, `{
	  "envelope_sender": "noreply@example.com",
	  "recipients": [
	    {"email": "ann@example.net", "name": "Ann", "substitutions": {"plan": "gold"}, "metadata": {"tenant": "t1"}},
	    {"email": "bob@example.net", "substitutions": {"plan": "silver"}}
	  ],
	  "substitutions": {"company": "Acme"},
	  "content": {
	    "subject": "{{ company }} plan {{ plan|upper }}",
	    "text_body": "Hello {{ name }} <{{ email }}>\nyour plan: {{ plan }}",
	    "html_body": "<p>{{ company }} & {{ plan }}</p>",
	    "from": {"email": "news@example.com", "name": "Acme News"},
	    "headers": {"X-Campaign": "spring-{{ plan }}"},
	    "attachments": [{"data": "aGVsbG8=", "base64": true, "content_type": "text/plain", "file_name": "a.txt"}]
	  }
	}`)
	if code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	var resp InjectResponse
	if err := json.Unmarshal([]byte(body), &resp); err != nil || resp.SuccessCount != 2 || resp.FailCount != 0 || resp.FailedRecipients == nil || resp.Errors == nil {
		t.Fatalf("response %s (%v)", body, err)
	}
	msgs := inj.messages()
	if len(msgs) != 2 {
		t.Fatalf("%d messages", len(msgs))
	}
	m, err := mail.ReadMessage(strings.NewReader(string(msgs[0].Data())))
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Header.Get("Subject"); got != "Acme plan GOLD" {
		t.Errorf("subject %q", got)
	}
	if got := m.Header.Get("To"); got != `"Ann" <ann@example.net>` {
		t.Errorf("to %q", got)
	}
	if got := m.Header.Get("X-Campaign"); got != "spring-gold" {
		t.Errorf("x-campaign %q", got)
	}
	if m.Header.Get("X-KumoRef") == "" || m.Header.Get("Received") != "" {
		t.Errorf("trace headers: X-KumoRef %q Received %q", m.Header.Get("X-KumoRef"), m.Header.Get("Received"))
	}
	if v, _ := msgs[0].Meta("tenant"); v != "t1" {
		t.Errorf("metadata tenant = %v", v)
	}
	mt, params, _ := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if mt != "multipart/mixed" {
		t.Fatalf("content type %s", mt)
	}
	mr := multipart.NewReader(m.Body, params["boundary"])
	alt, err := mr.NextPart()
	if err != nil {
		t.Fatal(err)
	}
	amt, aparams, _ := mime.ParseMediaType(alt.Header.Get("Content-Type"))
	if amt != "multipart/alternative" {
		t.Fatalf("first part %s", amt)
	}
	ar := multipart.NewReader(alt, aparams["boundary"])
	text, _ := ar.NextPart()
	tb, _ := io.ReadAll(text) // multipart decodes quoted-printable
	if string(tb) != "Hello Ann <ann@example.net>\r\nyour plan: gold" {
		t.Errorf("text body %q", tb)
	}
	html, _ := ar.NextPart()
	hb, _ := io.ReadAll(html)
	if string(hb) != "<p>Acme & gold</p>" {
		t.Errorf("html body %q (no HTML escaping expected)", hb)
	}
	att, _ := mr.NextPart()
	ab, _ := io.ReadAll(base64.NewDecoder(base64.StdEncoding, att))
	if att.FileName() != "a.txt" || string(ab) != "hello" {
		t.Errorf("attachment %q %q", att.FileName(), ab)
	}
	if len(auths) != 2 || auths[0]["groups"].([]any)[0] != "kumomta:http-listener-trusted-ip" {
		t.Errorf("auth info %v", auths)
	}
	m2, _ := mail.ReadMessage(strings.NewReader(string(msgs[1].Data())))
	if got := m2.Header.Get("Subject"); got != "Acme plan SILVER" {
		t.Errorf("second subject %q", got)
	}
}

func TestInjectRawContent(t *testing.T) {
	inj := newFakeInjector()
	_, base := start(t, config.HTTPListener{}, Deps{Inject: inj})
	code, body := postInject(t, base, `{"envelope_sender":"a@example.com","recipients":[{"email":"b@example.net","name":"B"}],
	  "content":"Subject: hi {{ name }}\nTo: {{ to_header }}\n\nbody\n",
	  "trace_headers":{"received_header":true,"header_name":"X-Ref"}}`)
	if code != 200 || !strings.Contains(body, `"success_count":1`) {
		t.Fatalf("%d %s", code, body)
	}
	data := string(inj.messages()[0].Data())
	if !strings.HasPrefix(data, "X-Ref: ") || !strings.Contains(data, "Received: from ") || !strings.Contains(data, "Subject: hi B\r\nTo: \"B\" <b@example.net>\r\n\r\nbody\r\n") {
		t.Fatalf("message %q", data)
	}
	if len(inj.records) != 1 || inj.records[0].ReceptionProtocol != "HTTP" || inj.records[0].Queue != "test" {
		t.Fatalf("records %+v", inj.records)
	}
}

func TestInjectErrors(t *testing.T) {
	inj := newFakeInjector()
	_, base := start(t, config.HTTPListener{}, Deps{Inject: inj})
	cases := []struct {
		name, body string
		code       int
		inBody     string
	}{
		{"bad json", `{"envelope_sender":`, 400, "JSON"},
		{"missing recipients", `{"envelope_sender":"a@example.com","content":"x"}`, 422, "missing field `recipients`"},
		{"missing content", `{"envelope_sender":"a@example.com","recipients":[]}`, 422, "missing field `content`"},
		{"wrong type", `{"envelope_sender":"a@example.com","recipients":"x","content":"x"}`, 422, "recipients"},
		{"bad address", `{"envelope_sender":"a@example.com","recipients":[{"email":"nope"}],"content":"x"}`, 422, "recipients[0].email"},
		{"bad template", `{"envelope_sender":"a@example.com","recipients":[{"email":"b@example.com"}],"content":{"text_body":"hi {{ name "}}`, 422, "failed parsing field 'content.text_body' as template"},
		{"bad raw template", `{"envelope_sender":"a@example.com","recipients":[{"email":"b@example.com"}],"content":"{% if %}"}`, 422, "failed parsing field 'content' as template"},
		{"handlebars", `{"envelope_sender":"a@example.com","recipients":[{"email":"b@example.com"}],"content":"x","template_dialect":"Handlebars"}`, 422, "Handlebars"},
	}
	for _, c := range cases {
		code, body := postInject(t, base, c.body)
		if code != c.code || !strings.Contains(body, c.inBody) {
			t.Errorf("%s: %d %q, want %d with %q", c.name, code, body, c.code, c.inBody)
		}
	}
	if n := inj.count(); n != 0 {
		t.Fatalf("%d messages queued by failed requests", n)
	}
}

func TestInjectPerRecipientFailures(t *testing.T) {
	inj := newFakeInjector()
	inj.generated = func(msg *message.Message, auth map[string]any) error {
		if msg.Recipients()[0].User == "reject" {
			return &smtpreply.Rejection{Code: 550, Text: "5.7.1 no thanks"}
		}
		msg.SetMeta("queue", "q")
		return nil
	}
	_, base := start(t, config.HTTPListener{}, Deps{Inject: inj})
	code, body := postInject(t, base, `{"envelope_sender":"a@example.com","recipients":[{"email":"ok@example.com"},{"email":"reject@example.com"}],"content":"Subject: x\r\n\r\nx"}`)
	var resp InjectResponse
	json.Unmarshal([]byte(body), &resp)
	if code != 200 || resp.SuccessCount != 1 || resp.FailCount != 1 || len(resp.FailedRecipients) != 1 || resp.FailedRecipients[0] != "reject@example.com" ||
		len(resp.Errors) != 1 || !strings.HasPrefix(resp.Errors[0], "reject@example.com: ") {
		t.Fatalf("%d %s", code, body)
	}
	// an insert failure is taken back out of the spool: nothing half-queued
	inj.insertErr = errors.New("queue is closed")
	code, body = postInject(t, base, `{"envelope_sender":"a@example.com","recipients":[{"email":"ok@example.com"}],"content":"x"}`)
	if code != 200 || !strings.Contains(body, `"fail_count":1`) || len(inj.spooled) != 1 {
		t.Fatalf("%d %s spooled=%d", code, body, len(inj.spooled))
	}
}

func TestInjectFullSpool(t *testing.T) {
	inj := newFakeInjector()
	_, base := start(t, config.HTTPListener{}, Deps{Inject: inj, Health: func() (bool, string) { return false, "storage is too full" }})
	code, body := postInject(t, base, `{"envelope_sender":"a@example.com","recipients":[{"email":"b@example.com"}],"content":"x"}`)
	if code != 503 || !strings.Contains(body, "storage is too full") || inj.count() != 0 {
		t.Fatalf("%d %q", code, body)
	}
}

func TestCRLF(t *testing.T) {
	for in, want := range map[string]string{
		"":               "",
		"a\r\nb\r\n":     "a\r\nb\r\n",
		"a\nb\n":         "a\r\nb\r\n",
		"a\rb":           "a\r\nb",
		"a\r\nb\nc\r":    "a\r\nb\r\nc\r\n",
		"\n\n":           "\r\n\r\n",
		"no line ending": "no line ending",
	} {
		if got := crlf(in); got != want {
			t.Errorf("crlf(%q) = %q, want %q", in, got, want)
		}
	}
}
