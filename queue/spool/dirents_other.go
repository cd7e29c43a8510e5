//go:build !linux

package spool

import (
	"io/fs"
	"os"
)

// list returns the entries of dir (os.File.ReadDir, unsorted).
func (w *walker) list(dir string) ([]dirent, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
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
