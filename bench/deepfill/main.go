// Command deepfill writes messages straight into a kumogo spool (data and
// meta), as the daemon would have after accepting them, for the
// deep-queue scenario (bench/deepqueue.sh): filling a million messages
// over SMTP or HTTP would take longer than the measurement itself. Each
// message gets a body of --size bytes of pseudo-random text (so that the
// spool's compression is not flattered), one recipient rNNNNNNN@DOMAIN
// (the counting sink checks each arrives once) and the meta an HTTP
// injection leaves, with meta queue set to --queue. The daemon must not
// be running on the spool.
//
//	deepfill --kind RocksDB --data DIR --meta DIR --messages 1000000 --queue '[127.0.0.1]:2525'
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/message"
	"github.com/kumogo/kumogo/queue/spool"
)

func main() {
	kind := flag.String("kind", spool.KindRocksDB, "spool kind: RocksDB or LocalDisk")
	dataDir := flag.String("data", "", "data spool path")
	metaDir := flag.String("meta", "", "meta spool path")
	n := flag.Int("messages", 100000, "messages to write")
	size := flag.Int("size", 4096, "body bytes per message")
	queue := flag.String("queue", "", "meta queue of every message (required)")
	domain := flag.String("domain", "deep.example", "recipient domain")
	workers := flag.Int("workers", 16, "concurrent writers")
	flag.Parse()
	if *dataDir == "" || *metaDir == "" || *queue == "" || *n <= 0 || *size <= 0 || *workers <= 0 {
		fmt.Fprintln(os.Stderr, "deepfill: --data, --meta, --queue and positive --messages, --size, --workers are required")
		os.Exit(2)
	}
	log := zerolog.New(os.Stderr).Level(zerolog.WarnLevel)
	sp, err := spool.OpenSpools(config.Spool{Name: "data", Kind: *kind, Path: *dataDir},
		config.Spool{Name: "meta", Kind: *kind, Path: *metaDir}, log)
	if err != nil {
		fmt.Fprintln(os.Stderr, "deepfill:", err)
		os.Exit(1)
	}
	gen := message.NewIDGenerator()
	var next atomic.Int64
	var failed atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < *workers; w++ {
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			rnd := rand.New(rand.NewPCG(seed, 99))
			for {
				i := next.Add(1) - 1
				if i >= int64(*n) {
					return
				}
				rcpt := message.Address{User: fmt.Sprintf("r%07d", i), Domain: *domain}
				msg := message.New(gen, message.Address{User: "bulk", Domain: "sender.example"}, []message.Address{rcpt}, body(rnd, *size, i))
				msg.SetMeta("queue", *queue)
				msg.SetMeta("reception_protocol", "HTTP")
				msg.SetMeta("received_from", "127.0.0.1:40000")
				msg.SetMeta("received_via", "127.0.0.1:8000")
				msg.SetMeta("hostname", "deep.test")
				// sync only at the end (one flush for the whole fill)
				if err := sp.Save(context.Background(), msg, false); err != nil {
					failed.Add(1)
					fmt.Fprintln(os.Stderr, "deepfill:", err)
				}
			}
		}(uint64(w) + 1)
	}
	wg.Wait()
	if err := sp.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "deepfill: close:", err)
		os.Exit(1)
	}
	secs := time.Since(start).Seconds()
	fmt.Printf("filled=%d failed=%d secs=%.1f rate=%.0f msgs/s\n", int64(*n)-failed.Load(), failed.Load(), secs, float64(*n)/secs)
	if failed.Load() > 0 {
		os.Exit(1)
	}
}

const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 "

// body is a message of about size bytes: headers, then lines of random
// letters.
func body(rnd *rand.Rand, size int, i int64) []byte {
	b := make([]byte, 0, size+128)
	b = fmt.Appendf(b, "From: bulk@sender.example\r\nSubject: deep %d\r\n\r\n", i)
	for len(b) < size {
		for j := 0; j < 76 && len(b) < size; j++ {
			b = append(b, letters[rnd.IntN(len(letters))])
		}
		b = append(b, '\r', '\n')
	}
	return b
}
