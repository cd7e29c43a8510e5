package main

import (
	"fmt"
	"io"
	"os"

	"github.com/kumogo/kumogo/policies"
	"github.com/kumogo/kumogo/runtime"
)

// compatMarkdown is docs/compat.md as the runtime's registry has it.
func compatMarkdown() (string, error) {
	rep, err := runtime.APIReport(policies.Modules())
	if err != nil {
		return "", err
	}
	return runtime.CompatMarkdown(rep), nil
}

// writeAPIDump is kumogo --dump-api PATH.
func writeAPIDump(path string, stderr io.Writer) int {
	md, err := compatMarkdown()
	if err != nil {
		fmt.Fprintln(stderr, "dump-api:", err)
		return 1
	}
	if path == "-" {
		_, err = os.Stdout.WriteString(md)
	} else {
		err = os.WriteFile(path, []byte(md), 0o644)
	}
	if err != nil {
		fmt.Fprintln(stderr, "dump-api:", err)
		return 1
	}
	return 0
}
