// Command baresink runs the bare go-smtp discard server that kumogo's sink
// is measured against: it accepts every sender and recipient, reads DATA and
// BDAT bodies into io.Discard and counts messages. It listens on loopback
// only, prints "listening on <addr>" on stderr when ready, and on SIGINT or
// SIGTERM closes and prints the counts.
//
//	baresink --listen 127.0.0.1:2525
//
// With --addrs N it listens on N loopback addresses at the same port: the
// --listen address and 127.1.X.Y for the others, where address i (1 ≤ i < N)
// is 127.1.(i/250).(1+i%250) — the addresses bench/fakedns gives its MX hosts.
//
// With --expect N it also prints "reached messages=N unix_ns=T" on stderr
// once it has counted N messages (checked every millisecond), T being the
// wall clock time it saw the Nth: benchmark scripts time relays end to end
// with it. With --every as well it prints such a line at every multiple of
// N (N, 2N, ...), for scripts that run several timed batches through one
// relay.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/kumogo/kumogo/internal/testutil/baresink"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:2525", "loopback address to listen on (host:port; port 0 picks one)")
	verbose := flag.Bool("v", false, "log go-smtp connection errors to stderr")
	addrs := flag.Int("addrs", 1, "listen on this many loopback addresses (the --listen one, then 127.1.X.Y at the same port)")
	expect := flag.Int64("expect", 0, "print \"reached messages=N unix_ns=T\" on stderr once N messages are counted (0: never)")
	every := flag.Bool("every", false, "with --expect N: print the line at every multiple of N, not only at N")
	flag.Parse()

	if err := checkLoopback(*listen); err != nil {
		fmt.Fprintln(os.Stderr, "baresink:", err)
		os.Exit(2)
	}
	var errLog *log.Logger
	if *verbose {
		errLog = log.New(os.Stderr, "baresink: ", log.LstdFlags)
	}
	sink, err := baresink.Listen(*listen, errLog)
	if err != nil {
		fmt.Fprintln(os.Stderr, "baresink:", err)
		os.Exit(1)
	}
	_, port, _ := net.SplitHostPort(sink.Addr())
	for i := 1; i < *addrs; i++ {
		if err := sink.Also(net.JoinHostPort(ManyAddr(i), port)); err != nil {
			fmt.Fprintln(os.Stderr, "baresink:", err)
			os.Exit(1)
		}
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	fmt.Fprintf(os.Stderr, "listening on %s\n", sink.Addr())
	if *expect > 0 {
		go func() {
			t := time.NewTicker(time.Millisecond)
			defer t.Stop()
			target := *expect
			for range t.C {
				if n := sink.Messages.Load(); n >= target {
					fmt.Fprintf(os.Stderr, "reached messages=%d unix_ns=%d\n", target, time.Now().UnixNano())
					if !*every {
						return
					}
					target += *expect
				}
			}
		}()
	}

	sig := <-sigs
	if err := sink.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "baresink: close:", err)
	}
	fmt.Fprintf(os.Stderr, "baresink: %v: messages=%d recipients=%d bytes=%d sessions=%d\n",
		sig, sink.Messages.Load(), sink.Recipients.Load(), sink.Bytes.Load(), sink.Sessions.Load())
}

// checkLoopback refuses anything but a loopback listen address: the
// benchmark never talks to other machines.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("listen address %q is not loopback", addr)
	}
	return nil
}

// ManyAddr is the i-th extra loopback address (bench/fakedns uses the same
// numbering): 127.1.(i/250).(1+i%250).
func ManyAddr(i int) string { return fmt.Sprintf("127.1.%d.%d", i/250, 1+i%250) }
