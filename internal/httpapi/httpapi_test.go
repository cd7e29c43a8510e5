package httpapi

import (
	"context"
	"io"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/kumogo/kumogo/internal/config"
)

func TestLiveness(t *testing.T) {
	s := New(config.HTTPListener{Listen: "127.0.0.1:0"}, zerolog.Nop())
	var full atomic.Bool
	s.SetHealth(func() (bool, string) {
		if full.Load() {
			return false, "storage is too full"
		}
		return true, ""
	})
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	go s.Serve()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		s.Shutdown(ctx)
	}()
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + s.Addr().String() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/api/check-liveness/v1"); code != 200 || body != "OK" {
		t.Fatalf("%d %q", code, body)
	}
	full.Store(true)
	if code, body := get("/api/check-liveness/v1"); code != 503 || body != "storage is too full" {
		t.Fatalf("%d %q", code, body)
	}
	if code, _ := get("/api/inject/v1"); code != 501 {
		t.Fatalf("unimplemented endpoint: %d", code)
	}
}
