package smtpd

import (
	"bufio"
	"fmt"
	"net"
	"runtime"
	"runtime/metrics"
	"strings"
	"testing"
	"time"
)

// TestBDATLastChunkReadBySession: the last BDAT chunk is read by the
// session straight into the message's buffer, not through go-smtp, whose
// path allocates a 32 KB copy buffer per chunk (io.Copy into an io.Pipe)
// and copies the body once more. Over 100 messages of 100 KB by BDAT LAST,
// each answered with its ids, fewer than 50 objects of 32 KB or more are
// allocated (100 or more through go-smtp). The pooled body buffers are
// 18 KB and 130 KB: the race detector makes sync.Pool drop about a quarter
// of them on purpose, and those come back as new 130 KB buffers, so the
// bound is not near 0.
func TestBDATLastChunkReadBySession(t *testing.T) {
	ts := startServer(t, testConfig(), nullPolicy())
	line := strings.Repeat("b", 76) + "\r\n"
	body := "Subject: cost\r\n\r\n" + strings.Repeat(line, 100*1024/len(line))
	payload := []byte(fmt.Sprintf("MAIL FROM:<a@x.example>\r\nRCPT TO:<b@y.example>\r\nBDAT %d LAST\r\n%s", len(body), body))
	c, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	r := bufio.NewReaderSize(c, 4096)
	expect := func(prefix string) {
		t.Helper()
		for {
			l, err := r.ReadSlice('\n')
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(string(l), prefix) {
				t.Fatalf("got %q, want %s", l, prefix)
			}
			if len(l) > 3 && l[3] == ' ' {
				return
			}
		}
	}
	expect("220")
	c.Write([]byte("EHLO client.example\r\n"))
	expect("250")
	send := func() {
		t.Helper()
		if _, err := c.Write(payload); err != nil {
			t.Fatal(err)
		}
		expect("250 OK")
		expect("250 OK")
		expect("250 OK ids=")
	}
	for range 10 { // warm the pools
		send()
	}
	const n = 100
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	copies := copyBuffers()
	for range n {
		send()
	}
	copies = copyBuffers() - copies
	runtime.ReadMemStats(&after)
	t.Logf("%d bytes allocated per message; %d objects of 32 KB or more for %d messages", (after.TotalAlloc-before.TotalAlloc)/n, copies, n)
	if got := copies; got >= n/2 {
		t.Fatalf("%d objects of 32 KB or more allocated for %d messages, want less than %d", got, n, n/2)
	}
	if got := len(ts.recs.All()); got != n+10 {
		t.Fatalf("%d Reception records, want %d", got, n+10)
	}
}

// copyBuffers is the count of heap objects of 32 KB (io.Copy's buffer) or
// more allocated so far.
func copyBuffers() uint64 {
	runtime.GC() // the counts of small objects are flushed from each P's cache by a collection
	s := []metrics.Sample{{Name: "/gc/heap/allocs-by-size:bytes"}}
	metrics.Read(s)
	h := s[0].Value.Float64Histogram()
	var n uint64
	for i, c := range h.Counts {
		if h.Buckets[i+1] > 32<<10 {
			n += c
		}
	}
	return n
}
