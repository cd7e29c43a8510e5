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

func TestImportHeaders(t *testing.T) {
	r := newRuntime(t, `
local kumo = require 'kumo'
kumo.on('smtp_server_message_received', function(msg)
  msg:import_headers {
    'X-Campaign-ID',
    { name = 'X-Tag', match = 'all' },
    { name = 'X-Tag', match = 'first', target = 'first_tag' },
    { name = 'X-Tenant-Name', transform = 'camel_case', remove = true },
    { name = 'X-Tenant-Name', transform = 'pascal_case' },
    { name = 'X-Missing' },
  }
  assert(msg:get_meta('x_campaign_id') == 'c-42')
  local tags = msg:get_meta('x_tag')
  assert(#tags == 2 and tags[1] == 'one' and tags[2] == 'two')
  assert(msg:get_meta('first_tag') == 'one')
  assert(msg:get_meta('xTenantName') == 'acme')
  assert(msg:get_meta('XTenantName') == nil) -- removed by the entry before
  assert(msg:get_meta('x_missing') == nil)
  assert(msg:get_first_named_header_value('X-Tenant-Name') == nil)
  local ok, err = pcall(function() msg:import_headers { { name = 'X-Tag', match = 'middle' } } end)
  assert(not ok and tostring(err):find('unknown match'), tostring(err))
end)`)
	m := message.New(message.NewIDGenerator(), message.Address{User: "a", Domain: "x"}, []message.Address{{User: "b", Domain: "y"}},
		[]byte("X-Campaign-ID: c-1\r\nX-Campaign-ID: c-42\r\nX-Tag: one\r\nX-Tag: two\r\nX-Tenant-Name: acme\r\n\r\nbody\r\n"))
	if err := r.MessageReceived(context.Background(), m, message.NewConnMeta()); err != nil {
		t.Fatal(err)
	}
}
