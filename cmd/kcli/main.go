// Command kcli is kumogo's administration client, with the subcommands
// and flags of KumoMTA's kcli: it talks to a daemon's HTTP listener
// (--endpoint, or KUMO_KCLI_ENDPOINT, default http://127.0.0.1:8000).
// Failures are printed as one readable line and exit with status 1; a bad
// command line exits with status 2.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// command is one subcommand.
type command struct {
	help string
	run  func(ctx context.Context, c *client, args []string, stdout io.Writer) error
}

var commands = map[string]command{
	"queue-summary":          {"summarize the ready and scheduled queues (from /metrics)", queueSummary},
	"bounce":                 {"bounce matching messages, now and for --duration", bounce},
	"bounce-list":            {"list the bounce rules in effect", listCmd("/api/admin/bounce/v1")},
	"bounce-cancel":          {"cancel a bounce rule (--id)", cancelCmd("/api/admin/bounce/v1")},
	"suspend":                {"suspend delivery of matching scheduled queues", suspend},
	"suspend-list":           {"list the scheduled queue suspensions", listCmd("/api/admin/suspend/v1")},
	"suspend-cancel":         {"cancel a scheduled queue suspension (--id)", cancelCmd("/api/admin/suspend/v1")},
	"suspend-ready-q":        {"suspend a ready queue (--name)", suspendReadyQ},
	"suspend-ready-q-list":   {"list the ready queue suspensions", listCmd("/api/admin/suspend-ready-q/v1")},
	"suspend-ready-q-cancel": {"cancel a ready queue suspension (--id)", cancelCmd("/api/admin/suspend-ready-q/v1")},
	"rebind":                 {"move matching messages to other queues", rebind},
	"inspect-message":        {"show a message's metadata (and body with --want-body)", inspectMessage},
	"inspect-sched-q":        {"show a scheduled queue", inspectSchedQ},
	"set-log-filter":         {"change the daemon's diagnostic log filter", setLogFilter},
	"top":                    {"live view of rates and queues", top},
}

// usageError is a bad command line (exit status 2).
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: kcli [--endpoint URL] <command> [flags]\n\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-24s %s\n", n, commands[n].help)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("kcli", flag.ContinueOnError)
	fs.SetOutput(stderr)
	def := os.Getenv("KUMO_KCLI_ENDPOINT")
	if def == "" {
		def = "http://127.0.0.1:8000"
	}
	endpoint := fs.String("endpoint", def, "the daemon's HTTP listener (KUMO_KCLI_ENDPOINT)")
	fs.Usage = func() { usage(stderr) }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() == 0 {
		usage(stderr)
		return 2
	}
	name := fs.Arg(0)
	cmd, ok := commands[name]
	if !ok {
		fmt.Fprintf(stderr, "kcli: unknown command %q\n", name)
		usage(stderr)
		return 2
	}
	c := newClient(*endpoint)
	err := cmd.run(ctx, c, fs.Args()[1:], stdout)
	var ue *usageError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "kcli %s: %s\n", name, ue.msg)
		return 2
	default:
		fmt.Fprintf(stderr, "kcli %s: %s\n", name, strings.TrimSpace(err.Error()))
		return 1
	}
}
