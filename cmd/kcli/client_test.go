package main

import (
	"bytes"
	"testing"
)

// TestPrintJSONNoBlankLine: a JSON answer that ends with a newline (as
// the daemon's encoder writes it) is printed indented, without a blank
// line after it.
func TestPrintJSONNoBlankLine(t *testing.T) {
	var b bytes.Buffer
	if err := printJSON(&b, []byte("{\"id\":\"x\"}\n")); err != nil {
		t.Fatal(err)
	}
	if got, want := b.String(), "{\n  \"id\": \"x\"\n}\n"; got != want {
		t.Fatalf("printed %q, want %q", got, want)
	}
	b.Reset()
	if err := printJSON(&b, []byte("\n")); err != nil || b.String() != "OK\n" {
		t.Fatalf("empty answer printed %q (%v)", b.String(), err)
	}
}
