package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/kumogo/kumogo/internal/message"
	"github.com/kumogo/kumogo/internal/testutil"
	"github.com/kumogo/kumogo/policies"
	"github.com/kumogo/kumogo/runtime"
	"github.com/kumogo/kumogo/smtpd"
)

// startInProcessSink runs the bundled sink.lua in this process (runtime and
// listener; with logs, Reception records in zstd segments in a temporary
// directory) and returns its address.
func startInProcessSink(tb testing.TB, logs bool) string {
	tb.Helper()
	src, ok := policies.Lookup("sink.lua")
	if !ok {
		tb.Fatal("no bundled sink.lua")
	}
	tb.Setenv("KUMOGO_SINK_LISTEN", "127.0.0.1:0")
	tb.Setenv("KUMOGO_SINK_DIR", tb.TempDir())
	logDir := ""
	if logs {
		logDir = tb.TempDir()
	}
	tb.Setenv("KUMOGO_SINK_LOG_DIR", logDir)
	tb.Setenv("KUMOGO_SINK_HOSTNAME", "bench.test")
	return startInProcessPolicy(tb, "policies/sink.lua", src)
}

// startInProcessPolicy runs a policy (its path, and its source unless it
// is read from path) in this process and returns its first listener's
// address.
func startInProcessPolicy(tb testing.TB, path string, src []byte) string {
	tb.Helper()
	d := &daemon{log: zerolog.Nop(), ids: message.NewIDGenerator()}
	rt, err := runtime.New(runtime.Options{PolicyPath: path, Source: src, Modules: policies.Modules(), Host: d, Log: zerolog.Nop()})
	if err != nil {
		tb.Fatal(err)
	}
	d.rt = rt
	if err := rt.Init(context.Background()); err != nil {
		tb.Fatal(err)
	}
	srv := d.listeners[0]
	go srv.Serve()
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		rt.Close()
		for _, l := range d.loggers.list {
			_ = l.Close(ctx)
		}
	})
	return srv.Addr().String()
}

// loadClient is one pipelining SMTP client connection used by the
// benchmarks: MAIL, RCPT and DATA (or BDAT LAST with the body) go out in one
// write.
type loadClient struct {
	c  net.Conn
	r  *bufio.Reader
	bw *bufio.Writer
}

func dialLoad(addr string) (*loadClient, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	lc := &loadClient{c: c, r: bufio.NewReaderSize(c, 8192), bw: bufio.NewWriterSize(c, 256*1024)}
	if err := lc.expect(220); err != nil {
		return nil, err
	}
	lc.bw.WriteString("EHLO bench.client\r\n")
	lc.bw.Flush()
	return lc, lc.expect(250)
}

func (lc *loadClient) expect(code int) error {
	lc.c.SetReadDeadline(time.Now().Add(30 * time.Second))
	for {
		line, err := lc.r.ReadString('\n')
		if err != nil {
			return err
		}
		if len(line) < 4 || !strings.HasPrefix(line, fmt.Sprint(code)) {
			return fmt.Errorf("want %d, got %q", code, line)
		}
		if line[3] == ' ' {
			return nil
		}
	}
}

func (lc *loadClient) send(body []byte, bdat bool) error {
	return lc.sendMsg("rcpt@bench.example", body, bdat)
}

// sendTo sends one message by DATA to rcpt and waits for its 250.
func (lc *loadClient) sendTo(rcpt string, body []byte) error {
	return lc.sendMsg(rcpt, body, false)
}

func (lc *loadClient) sendMsg(rcpt string, body []byte, bdat bool) error {
	lc.bw.WriteString("MAIL FROM:<sender@bench.example>\r\nRCPT TO:<" + rcpt + ">\r\n")
	if bdat {
		fmt.Fprintf(lc.bw, "BDAT %d LAST\r\n", len(body))
		lc.bw.Write(body)
	} else {
		lc.bw.WriteString("DATA\r\n")
	}
	if err := lc.bw.Flush(); err != nil {
		return err
	}
	if err := lc.expect(250); err != nil {
		return err
	}
	if err := lc.expect(250); err != nil {
		return err
	}
	if !bdat {
		if err := lc.expect(354); err != nil {
			return err
		}
		lc.bw.Write(body)
		lc.bw.WriteString(".\r\n")
		if err := lc.bw.Flush(); err != nil {
			return err
		}
	}
	return lc.expect(250)
}

func benchBody(size int) []byte {
	var sb strings.Builder
	sb.WriteString("From: sender@bench.example\r\nTo: rcpt@bench.example\r\nSubject: bench\r\n\r\n")
	line := strings.Repeat("abcdefghij", 7) + "\r\n"
	for sb.Len() < size {
		sb.WriteString(line)
	}
	return []byte(sb.String())
}

// runLoad sends b.N messages over conc persistent connections and reports
// msgs/s.
func runLoad(b *testing.B, addr string, conc int, bdat bool) {
	body := benchBody(100 * 1024)
	clients := make([]*loadClient, conc)
	for i := range clients {
		lc, err := dialLoad(addr)
		if err != nil {
			b.Fatal(err)
		}
		clients[i] = lc
		defer lc.c.Close()
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, conc)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for _, lc := range clients {
		wg.Add(1)
		go func(lc *loadClient) {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				if err := lc.send(body, bdat); err != nil {
					errs <- err
					return
				}
			}
		}(lc)
	}
	wg.Wait()
	el := time.Since(start)
	b.StopTimer()
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
	b.ReportMetric(float64(b.N)/el.Seconds(), "msgs/s")
}

// BenchmarkSink100KB compares kumogo's sink (bundled sink.lua: one Lua
// event per message) with a bare go-smtp server that only discards, fed by
// the same client over loopback at concurrency 50.
func BenchmarkSink100KB(b *testing.B) {
	for _, mode := range []string{"DATA", "BDAT"} {
		b.Run("bare-go-smtp/"+mode, func(b *testing.B) {
			addr, stop := testutil.StartBareSink(b)
			defer stop()
			runLoad(b, addr, 50, mode == "BDAT")
		})
		b.Run("kumogo-sink.lua/"+mode, func(b *testing.B) {
			runLoad(b, startInProcessSink(b, false), 50, mode == "BDAT")
		})
		b.Run("kumogo-sink.lua+logs/"+mode, func(b *testing.B) {
			runLoad(b, startInProcessSink(b, true), 50, mode == "BDAT")
		})
	}
}

var _ smtpd.Policy = (*runtime.Runtime)(nil)
