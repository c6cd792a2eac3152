//go:build !linux

package results

import "os"

// replaceDir moves the directory src to dst, moving an existing dst aside
// first (dst is briefly missing between the two renames).
func replaceDir(src, dst string) error {
	if err := os.Rename(src, dst); err == nil {
		return nil
	} else if _, serr := os.Stat(dst); serr != nil {
		return err
	}
	return replaceDirAside(src, dst)
}
