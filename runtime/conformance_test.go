package runtime

import (
	"context"
	"strings"
	"testing"

	"github.com/kumogo/kumogo/internal/message"
)

// TestCheckFixConformance runs the production-policy pattern: check line
// endings and reject on failure; fix missing headers.
func TestCheckFixConformance(t *testing.T) {
	r := newRuntime(t, `
local kumo = require 'kumo'
kumo.on('smtp_server_message_received', function(msg)
  local failed = msg:check_fix_conformance('NON_CANONICAL_LINE_ENDINGS', '')
  if failed then
    kumo.reject(552, '5.6.0 ' .. failed)
  end
  local left = msg:check_fix_conformance('MISSING_DATE_HEADER|MISSING_MESSAGE_ID_HEADER',
    'MISSING_DATE_HEADER|MISSING_MESSAGE_ID_HEADER')
  assert(left == nil, left)
  local ok, err = pcall(function() return msg:check_fix_conformance('NO_SUCH_CHECK') end)
  assert(not ok and tostring(err):find('unknown conformance issue'), tostring(err))
end)`)
	gen := message.NewIDGenerator()
	run := func(data string) (*message.Message, error) {
		m := message.New(gen, message.Address{User: "a", Domain: "x"}, []message.Address{{User: "b", Domain: "y"}}, []byte(data))
		return m, r.MessageReceived(context.Background(), m, message.NewConnMeta())
	}
	m, err := run("Subject: hi\r\n\r\nbody\r\n")
	if err != nil {
		t.Fatal(err)
	}
	if d := string(m.Data()); !strings.Contains(d, "Date: ") || !strings.Contains(d, "Message-ID: <"+m.ID()+"@mx.test>") {
		t.Fatalf("headers not added: %q", d)
	}
	_, err = run("Subject: hi\n\nbody\n")
	if err == nil || !strings.Contains(err.Error(), "552 5.6.0 Message has conformance issues: NON_CANONICAL_LINE_ENDINGS") {
		t.Fatalf("bare LF message: %v", err)
	}
}

func TestAddressHeaders(t *testing.T) {
	r := newRuntime(t, `
local kumo = require 'kumo'
kumo.on('smtp_server_message_received', function(msg)
  local from = msg:from_header()
  assert(from.name == 'Alice Example' and from.email == 'alice@example.com', from.email)
  assert(from.user == 'alice' and from.domain == 'example.com')
  local to = msg:to_header()
  assert(#to.list == 2 and to.list[2].domain == 'example.net', tostring(#to.list))
  assert(msg:get_address_header('Reply-To') == nil)
  assert(msg:get_address_header('Subject') == nil) -- not an address list
end)`)
	m := message.New(message.NewIDGenerator(), message.Address{User: "a", Domain: "x"}, []message.Address{{User: "b", Domain: "y"}},
		[]byte("From: Alice Example <alice@example.com>\r\nTo: bob@example.org, \"Carol\" <carol@example.net>\r\nSubject: not an address\r\n\r\nbody\r\n"))
	if err := r.MessageReceived(context.Background(), m, message.NewConnMeta()); err != nil {
		t.Fatal(err)
	}
}
