package runtime

import (
	"context"
	"testing"

	"github.com/kumogo/kumogo/internal/config"
)

type fakeTSAHost struct {
	db     string
	listen []string
}

func (h *fakeTSAHost) ConfigureTSADBPath(_ context.Context, p string) error {
	h.db = p
	return nil
}

func (h *fakeTSAHost) StartTSAHTTPListener(_ context.Context, l *config.HTTPListener) error {
	h.listen = append(h.listen, l.Listen)
	return nil
}

// The tsa module exists only with Options.TSA (kumogo tsa), as KumoMTA's
// only exists in its tsa-daemon, and hands its calls to the host.
func TestTSAModule(t *testing.T) {
	src := `local kumo = require 'kumo'
local ok, tsa = pcall(require, 'tsa')
kumo.on('tsa_init', function()
  assert(ok, tostring(tsa))
  tsa.configure_tsa_db_path '/tmp/x.db'
  tsa.start_http_listener { listen = '127.0.0.1:0', trusted_hosts = { '127.0.0.1' } }
end)
kumo.on('probe', function() return ok end)
`
	h := &fakeTSAHost{}
	r, err := New(Options{PolicyPath: "tsa_init.lua", Source: []byte(src), TSA: h})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.Call(context.Background(), "tsa_init"); err != nil {
		t.Fatal(err)
	}
	if h.db != "/tmp/x.db" || len(h.listen) != 1 || h.listen[0] != "127.0.0.1:0" {
		t.Fatalf("host saw db %q listen %v", h.db, h.listen)
	}
	r2, err := New(Options{PolicyPath: "init.lua", Source: []byte(src)})
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	out, err := r2.Call(context.Background(), "probe")
	if err != nil || len(out) != 1 || out[0] != false {
		t.Fatalf("require 'tsa' outside kumogo tsa: %v %v", out, err)
	}
}
