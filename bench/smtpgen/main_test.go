package main

import (
	"strings"
	"testing"
)

func TestMakeMessage(t *testing.T) {
	for size := 128; size < 400; size++ {
		m := makeMessage(size)
		if len(m) != size {
			t.Fatalf("size %d: got %d bytes", size, len(m))
		}
		if !strings.HasSuffix(m, "\r\n") || strings.Contains(strings.ReplaceAll(m, "\r\n", ""), "\n") {
			t.Fatalf("size %d: lines not CRLF-terminated", size)
		}
		if strings.Contains(m, "\n.") {
			t.Fatalf("size %d: a line starts with a dot", size)
		}
	}
}
