package smtpd

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kumogo/kumogo/internal/message"
	"github.com/kumogo/kumogo/internal/testutil"
)

// TestBodyMemoryBudget: twelve clients send 700 KiB messages at once (by
// DATA and by BDAT) to a listener whose body budget is 2 MiB. The bodies
// reserved never exceed the budget; sessions wait for room, and a body that
// finds none gets a 451 in step (its session then sends it again, until
// each message has arrived whole).
func TestBodyMemoryBudget(t *testing.T) {
	var mu sync.Mutex
	sizes := map[int]int{}
	refused := 0
	p := &fakePolicy{received: func(m *message.Message) error {
		m.SetMeta("queue", "null")
		mu.Lock()
		sizes[len(m.Data())]++
		mu.Unlock()
		return nil
	}}
	cfg := testConfig()
	cfg.MaxMessageSize = 1 << 20
	cfg.MaxBodyMemory = 2 << 20
	ts := startServer(t, cfg, p)
	if _, _, limit, _ := ts.srv.BodyMemory(); limit != 2<<20 {
		t.Fatalf("budget %d", limit)
	}
	line := strings.Repeat("z", 98) + "\r\n"
	body := strings.Repeat(line, 700*1024/len(line))
	var wg sync.WaitGroup
	errs := make(chan error, 12)
	for i := 0; i < 12; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			c := testutil.Dial(t, ts.addr)
			defer c.Close()
			c.Conn().SetDeadline(time.Now().Add(30 * time.Second))
			if _, _, err := c.ReadReply(); err != nil {
				errs <- err
				return
			}
			cmds := "EHLO x\r\nMAIL FROM:<a@x.example>\r\nRCPT TO:<b@y.example>\r\n"
			if i%2 == 0 {
				cmds += "DATA\r\n"
			} else {
				cmds += fmt.Sprintf("BDAT %d LAST\r\n", len(body))
			}
			c.SendRaw(cmds)
			n := 3
			if i%2 == 0 {
				n = 4
			}
			for j := 0; j < n; j++ {
				if _, _, err := c.ReadReply(); err != nil {
					errs <- err
					return
				}
			}
			for try := 0; ; try++ {
				if try > 0 {
					c.SendRaw(cmds)
					for j := 0; j < n-1; j++ {
						if _, _, err := c.ReadReply(); err != nil {
							errs <- err
							return
						}
					}
				}
				if i%2 == 0 {
					c.SendRaw(body + ".\r\n")
				} else {
					c.SendRaw(body)
				}
				code, lines, err := c.ReadReply()
				if err == nil && code == 451 && try < 20 {
					mu.Lock()
					refused++
					mu.Unlock()
					cmds = strings.TrimPrefix(cmds, "EHLO x\r\n")
					continue
				}
				if err != nil || code != 250 {
					errs <- fmt.Errorf("client %d: %d %q %v", i, code, lines, err)
				}
				break
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	used, peak, limit, waits := ts.srv.BodyMemory()
	if used != 0 || peak > limit || peak < limit/2 || waits == 0 {
		t.Fatalf("body memory: used %d, peak %d, limit %d, waits %d", used, peak, limit, waits)
	}
	mu.Lock()
	defer mu.Unlock()
	total := 0
	for _, n := range sizes {
		total += n
	}
	if total != 12 || len(sizes) > 2 {
		t.Fatalf("messages received by size: %v", sizes)
	}
	t.Logf("peak %d of %d, %d waits, %d bodies refused with 451 and sent again", peak, limit, waits, refused)
}
