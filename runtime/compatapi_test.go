package runtime

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/kumogo/kumogo/internal/message"
)

// TestMissingKumoFunctionsFailByName: a KumoMTA function that kumogo
// lacks fails by its full name, at init (so at --validate); names that
// are not KumoMTA API stay nil, so feature tests keep working.
func TestMissingKumoFunctionsFailByName(t *testing.T) {
	r, err := newRuntimeErr(t, `
kumo.on('init', function()
  kumo.xfer.xfer_in_requeue {}
end)`)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	err = r.Init(context.Background())
	if err == nil || !strings.Contains(err.Error(), "kumo.xfer.xfer_in_requeue is not provided by kumogo") || !strings.Contains(err.Error(), "policy.lua:3") {
		t.Fatalf("Init err = %v", err)
	}

	r = newRuntime(t, `
kumo.on('t', function(msg)
  local function msgOf(f, ...) local ok, e = pcall(f, ...); return tostring(e) end
  return kumo.no_such_function == nil, kumo.http.no_such == nil, kumo.no_such_module == nil,
    type(kumo.on), require('kumo.http') == kumo.http,
    msgOf(kumo.apply_supplemental_trace_header, msg),
    msgOf(function() return msg:parse_mime() end),
    msgOf(kumo.jsonl.new_tailer)
end)`)
	defer r.Close()
	msg := message.New(message.NewIDGenerator(), message.Address{User: "s", Domain: "example.com"}, []message.Address{{User: "r", Domain: "example.com"}}, []byte("Subject: x\r\n\r\nbody\r\n"))
	out := run(t, r, msg)
	for i := 0; i < 5; i++ {
		if out[i] != true && out[i] != "function" {
			t.Errorf("result %d = %#v", i+1, out[i])
		}
	}
	for i, want := range []string{"kumo.apply_supplemental_trace_header is not provided by kumogo",
		"Message:parse_mime is not provided by kumogo", "kumo.jsonl.new_tailer is not provided by kumogo"} {
		if !strings.Contains(out[5+i].(string), want) {
			t.Errorf("result %d = %q, want %q", 6+i, out[5+i], want)
		}
	}
}

func TestAPIReportCoversDocumentedNames(t *testing.T) {
	rep, err := APIReport(nil)
	if err != nil {
		t.Fatal(err)
	}
	status := map[string]string{}
	for _, s := range rep {
		status[s.Name] = s.Status
	}
	for name, want := range map[string]string{
		"kumo.start_esmtp_listener": "provided", "kumo.dns.lookup_mx": "provided",
		"kumo.set_smtpsrv_threads": "no effect", "kumo.xfer.xfer_in_requeue": "not provided", "kumo.amqp.basic_publish": "provided", "kumo.http.build_client": "provided",
		"smtp_server_ehlo": "provided", "tsa_init": "provided", "proxy_init": "other daemon", "Message:dkim_sign": "provided",
		"ConnectionMeta:get_meta": "provided",
	} {
		if status[name] != want {
			t.Errorf("%s: %q, want %q", name, status[name], want)
		}
	}
}

func TestUnfiredEventWarned(t *testing.T) {
	var buf strings.Builder
	r, err := New(Options{PolicyPath: writePolicy(t, `kumo.on('smtp_server_get_dynamic_parameters', function() end) kumo.on('init', function() end)`),
		Log: zerolog.New(&buf)})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if !strings.Contains(buf.String(), "the policy handles smtp_server_get_dynamic_parameters, which kumogo never fires") || strings.Contains(buf.String(), "handles init") {
		t.Fatalf("log: %s", buf.String())
	}
}

// TestCalledEventsAreFired: every event docs/compat.md calls provided is
// named by the code outside the API tables (a guard against the list
// claiming more than kumogo does).
func TestCalledEventsAreFired(t *testing.T) {
	var src strings.Builder
	err := filepath.WalkDir("..", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "docs") {
			return filepath.SkipDir
		}
		base := filepath.Base(p)
		if !strings.HasSuffix(base, ".go") || strings.HasSuffix(base, "_test.go") || p == filepath.Join("..", "runtime", "compatapi.go") || p == filepath.Join("..", "runtime", "apinames.go") {
			return nil
		}
		b, err := os.ReadFile(p)
		src.Write(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	all := src.String()
	// every event the code names as a constant is listed as fired
	for _, m := range regexp.MustCompile(`= "([a-z_]+)"`).FindAllStringSubmatch(eventConsts(t), -1) {
		if _, ok := calledEvents[m[1]]; !ok {
			t.Errorf("event %s is fired (internal/event) but not listed in calledEvents", m[1])
		}
	}
	for ev := range calledEvents {
		if !strings.Contains(all, `"`+ev+`"`) {
			t.Errorf("event %s is listed as fired but no code names it", ev)
		}
	}
}

// eventConsts is the source of internal/event, where the fired events are
// named.
func eventConsts(t *testing.T) string {
	b, err := os.ReadFile(filepath.Join("..", "internal", "event", "event.go"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
