package spool

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/kumogo/kumogo/internal/message"
)

// BenchmarkPut100KB measures synchronous (durable) 100 KB writes with 1, 16
// and 256 concurrent writers, with group commit and with one flush per
// message (group commit disabled: each LocalDisk Put fsyncs its own file
// and directories; each RocksDB Put waits for a WAL sync of its own). It
// reports msgs/s and flushes to stable storage per message (fsyncs/msg:
// syncfs and fsync calls for LocalDisk, every pebble file sync for
// RocksDB).
func BenchmarkPut100KB(b *testing.B) {
	body := make([]byte, 100*1024)
	for i := range body {
		body[i] = byte('a' + i%26)
	}
	for _, kind := range kinds {
		for _, group := range []bool{true, false} {
			mode := "group"
			if !group {
				mode = "per-message"
			}
			for _, writers := range []int{1, 16, 256} {
				b.Run(fmt.Sprintf("%s/%s/writers=%d", kind, mode, writers), func(b *testing.B) {
					benchPut(b, kind, group, writers, body)
				})
			}
		}
	}
}

func benchPut(b *testing.B, kind string, group bool, writers int, body []byte) {
	s, err := open(spoolCfg("data", kind, b.TempDir()), testLog(b), group)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	gen := message.NewIDGenerator()
	ctx := context.Background()
	var next atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, writers)
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	cpu0 := cpuTime()
	start := time.Now()
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				if err := s.Put(ctx, newID(gen), body, true); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	close(errc)
	for err := range errc {
		b.Fatal(err)
	}
	st := s.Stats()
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/msg")
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(float64(st.Syncs)/float64(b.N), "fsyncs/msg")
}

// BenchmarkSave100KB measures Spools.Save (data and meta written
// concurrently, both synced) of 100 KB messages with group commit.
func BenchmarkSave100KB(b *testing.B) {
	for _, kind := range kinds {
		for _, writers := range []int{1, 16, 256} {
			b.Run(fmt.Sprintf("%s/writers=%d", kind, writers), func(b *testing.B) {
				s := openSpools(b, kind, b.TempDir())
				defer s.Close()
				gen := message.NewIDGenerator()
				msgs := make([]*message.Message, writers)
				for i := range msgs {
					msgs[i] = testMessage(gen, 1, 100*1024)
				}
				var next atomic.Int64
				var wg sync.WaitGroup
				errc := make(chan error, writers)
				b.SetBytes(100 * 1024)
				b.ResetTimer()
				cpu0 := cpuTime()
				start := time.Now()
				for w := 0; w < writers; w++ {
					wg.Add(1)
					go func(w int) {
						defer wg.Done()
						for next.Add(1) <= int64(b.N) {
							// a fresh id per save, same body and envelope
							m, _ := message.Restore(newID(gen), msgs[w].Sender(), msgs[w].Recipients(), msgs[w].MetaMap(), msgs[w].Data())
							if err := s.Save(context.Background(), m, true); err != nil {
								errc <- err
								return
							}
						}
					}(w)
				}
				wg.Wait()
				elapsed := time.Since(start)
				b.StopTimer()
				close(errc)
				for err := range errc {
					b.Fatal(err)
				}
				syncs := s.Data().Stats().Syncs + s.Meta().Stats().Syncs
				if d, ok := s.Data().(*localDisk); ok && d.syncer != nil && d.syncer == s.Meta().(*localDisk).syncer {
					syncs = d.Stats().Syncs // one syncer, counted in both
				}
				b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/msg")
				b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
				b.ReportMetric(float64(syncs)/float64(b.N), "fsyncs/msg")
			})
		}
	}
}

// cpuTime returns the process's user plus system CPU time, so that the
// cost per message can be told apart from the load of a shared machine.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
