package runtime

import (
	"context"
	"strings"
	"testing"
)

// TestRFC3464Lua: kumo.generate_rfc3464_message builds a report from a
// Bounce record; msg:parse_rfc3464 reads it back; msg:parse_rfc5965 is
// nil for it; a null-sender record gives no report.
func TestRFC3464Lua(t *testing.T) {
	r := newRuntime(t, `
local kumo = require 'kumo'
local function eq(a, b, what)
  if a ~= b then error(string.format('%s: got %s, want %s', what, tostring(a), tostring(b)), 2) end
end
kumo.on('smtp_server_message_received', function(msg)
  local params = {
    include_original_message = 'FullContent',
    enable_bounce = true,
    reporting_mta = { mta_type = 'dns', name = 'mta1.example.com' },
  }
  local record = {
    type = 'Bounce', sender = 'sender@example.com', recipient = 'recip@target.example',
    response = { code = 550, enhanced_code = { class = 5, subject = 7, detail = 1 }, content = 'no thanks' },
    peer_address = { name = 'mx.target.example', addr = '192.0.2.7' },
    delivery_protocol = 'ESMTP', created = 1057049557, timestamp = 1057056757,
  }
  local ndr = kumo.generate_rfc3464_message(params, msg, record)
  assert(ndr, 'no report')
  eq(tostring(ndr:sender()), '', 'null sender')
  eq(tostring(ndr:recipient()), 'sender@example.com', 'to the sender')
  eq(ndr:get_first_named_header_value('Subject'), 'Returned mail', 'subject')
  local rep = ndr:parse_rfc3464()
  eq(rep.per_message.reporting_mta.name, 'mta1.example.com', 'reporting mta')
  eq(rep.per_recipient[1].final_recipient.recipient, 'recip@target.example', 'final recipient')
  eq(rep.per_recipient[1].action, 'failed', 'action')
  eq(rep.per_recipient[1].status.class, 5, 'class')
  eq(rep.per_recipient[1].diagnostic_code.diagnostic, '550 5.7.1 no thanks', 'diagnostic')
  eq(rep.per_recipient[1].last_attempt_date, '2003-07-01T10:52:37Z', 'last attempt')
  eq(ndr:parse_rfc5965(), nil, 'not ARF')
  eq(msg:parse_rfc3464(), nil, 'plain mail is no report')
  record.sender = ''
  eq(kumo.generate_rfc3464_message(params, msg, record), nil, 'bounce of a bounce')
  record.sender = 'sender@example.com'
  record.type = 'Delivery'
  eq(kumo.generate_rfc3464_message(params, msg, record), nil, 'delivery')
  local ok, err = pcall(kumo.generate_rfc3464_message, { include_original_message = 'FullContent', reporting_mta = { mta_type = 'dns', name = 'x' } }, nil, record)
  assert(not ok and tostring(err):find('no original message'), tostring(err))
  ok, err = pcall(kumo.generate_rfc3464_message, { include_original_message = 'No' }, nil, record)
  assert(not ok and tostring(err):find('missing field .reporting_mta'), tostring(err))
end)
`)
	m := testMessage(t, "From: sender@example.com\r\nSubject: hi\r\n\r\nbody\r\n", "recip@target.example")
	if err := r.MessageReceived(context.Background(), m, newTestConn()); err != nil {
		t.Fatal(err)
	}
	// a malformed report is a Lua error naming the method
	r2 := newRuntime(t, `kumo.on('smtp_server_message_received', function(msg) msg:parse_rfc3464() end)`)
	bad := testMessage(t, "Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--\r\n", "r@example.com")
	if err := r2.MessageReceived(context.Background(), bad, newTestConn()); err == nil || !strings.Contains(err.Error(), "parse_rfc3464: malformed report") {
		t.Fatalf("malformed: %v", err)
	}
}
