//go:build !linux

package logrecord

import "os"

// dataSync makes f's written data durable (fsync where fdatasync is not
// available).
func dataSync(f *os.File) error { return f.Sync() }
