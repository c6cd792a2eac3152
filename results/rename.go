package results

import (
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// replaceDirAside replaces dst with src by renaming dst to a hidden sibling,
// src to dst, and removing the old directory.
func replaceDirAside(src, dst string) error {
	old := filepath.Join(filepath.Dir(dst), fmt.Sprintf(".%s.old-%d", filepath.Base(dst), time.Now().UnixNano()))
	if err := os.Rename(dst, old); err != nil {
		return err
	}
	if err := os.Rename(src, dst); err != nil {
		_ = os.Rename(old, dst) // put the previous attempt back
		return err
	}
	return os.RemoveAll(old)
}
