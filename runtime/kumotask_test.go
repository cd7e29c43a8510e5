package runtime

import (
	"os"
	"strings"
	"testing"
	"time"
)

func TestSpawnTaskAndMakeMessage(t *testing.T) {
	out := t.TempDir() + "/task.out"
	r := newRuntime(t, `
kumo.on('init', function()
  kumo.spawn_task { event_name = 'my.task', args = { 'hello', 'there' } }
end)
kumo.on('my.task', function(args)
  local f = assert(io.open('`+out+`', 'w'))
  f:write(kumo.json_encode(args), ' ', _KUMO_CURRENT_EVENT)
  f:close()
end)
kumo.on('t', function()
  local msg = kumo.make_message('sender@example.com', 'rcpt@example.net', 'Subject: hi\r\n\r\nbody\r\n')
  return msg:sender().email, msg:recipient().email, msg:get_first_named_header_value('Subject'), #msg:id() > 0
end)
`)
	defer r.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, _ := readFileString(out)
		if b == `["hello","there"] my.task` {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("task output %q", b)
		}
		time.Sleep(10 * time.Millisecond)
	}
	res := run(t, r)
	if res[0] != "sender@example.com" || res[1] != "rcpt@example.net" || res[2] != "hi" || res[3] != true {
		t.Fatalf("make_message: %v", res)
	}
	for _, c := range []struct{ src, want string }{
		{`kumo.spawn_task { args = {} }`, "missing field `event_name`"},
		{`kumo.spawn_task { event_name = 'x', arg = 1 }`, "unknown field `arg`"},
		{`kumo.make_message('not an address', 'a@b', '')`, "invalid address"},
	} {
		_, err := newRuntimeErr(t, c.src)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v", c.src, err)
		}
	}
}

func readFileString(p string) (string, error) {
	b, err := os.ReadFile(p)
	return string(b), err
}
