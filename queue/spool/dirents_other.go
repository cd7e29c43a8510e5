//go:build !linux

package spool

import (
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

// listFD returns the entries of the open directory fd (os.File.ReadDir
// on a duplicate of it, unsorted).
func (w *walker) listFD(fd int) ([]dirent, error) {
	dup, err := unix.Dup(fd)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(dup), "spool directory")
	defer f.Close()
	ents, err := f.ReadDir(-1)
	if err != nil {
		return nil, err
	}
	out := make([]dirent, len(ents))
	for i, e := range ents {
		t := typOther
		switch {
		case e.IsDir():
			t = typDir
		case e.Type()&fs.ModeType == 0:
			t = typReg
		}
		out[i] = dirent{name: e.Name(), typ: t}
	}
	return out, nil
}
