package runtime

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/rs/zerolog"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/message"
)

// fakeHost records what the policy asked for.
type fakeHost struct {
	mu       sync.Mutex
	esmtp    []*config.ESMTPListener
	http     []*config.HTTPListener
	spools   []*config.Spool
	logs     []*config.LocalLogs
	acctPath string
	bindErr  error
}

func (h *fakeHost) StartESMTPListener(_ context.Context, l *config.ESMTPListener) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.bindErr != nil {
		return h.bindErr
	}
	h.esmtp = append(h.esmtp, l)
	return nil
}

func (h *fakeHost) StartHTTPListener(_ context.Context, l *config.HTTPListener) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.http = append(h.http, l)
	return nil
}

func (h *fakeHost) DefineSpool(_ context.Context, s *config.Spool) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.spools = append(h.spools, s)
	return nil
}

func (h *fakeHost) ConfigureLocalLogs(_ context.Context, l *config.LocalLogs) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.logs = append(h.logs, l)
	return nil
}

func (h *fakeHost) ConfigureAccountingDBPath(_ context.Context, p string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.acctPath = p
	return nil
}

var errBind = errors.New("bind: address already in use")

// writePolicy writes src as policy.lua in a fresh directory.
func writePolicy(t testing.TB, src string) string {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, "policy.lua")
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// newRuntime builds a runtime for src (written to a temp policy.lua) and
// runs Init.
func newRuntime(t testing.TB, src string, mod ...func(*Options)) *Runtime {
	t.Helper()
	r, err := newRuntimeErr(t, src, mod...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := r.Init(context.Background()); err != nil {
		t.Fatalf("Init: %v", err)
	}
	return r
}

func newRuntimeErr(t testing.TB, src string, mod ...func(*Options)) (*Runtime, error) {
	t.Helper()
	opts := Options{
		PolicyPath: writePolicy(t, src),
		Log:        zerolog.Nop(),
		Hostname:   "mx.test",
	}
	if tt, ok := t.(*testing.T); ok {
		opts.Log = zerolog.New(zerolog.NewTestWriter(tt))
	}
	for _, m := range mod {
		m(&opts)
	}
	r, err := New(opts)
	if err == nil {
		t.Cleanup(func() { r.Close() })
	}
	return r, err
}

var testIDs = message.NewIDGenerator()

func testMessage(t testing.TB, data string, rcpts ...string) *message.Message {
	t.Helper()
	sender, err := message.ParseAddress("sender@example.com")
	if err != nil {
		t.Fatal(err)
	}
	var rs []message.Address
	for _, r := range rcpts {
		a, err := message.ParseAddress(r)
		if err != nil {
			t.Fatal(err)
		}
		rs = append(rs, a)
	}
	return message.New(testIDs, sender, rs, []byte(data))
}

// run calls the test event "t" (registered by the policy) and returns its
// results.
func run(t *testing.T, r *Runtime, args ...any) []any {
	t.Helper()
	out, err := r.Call(context.Background(), "t", args...)
	if err != nil {
		t.Fatalf("Call: %v", err)
	}
	return out
}
