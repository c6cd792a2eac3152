package results

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// replaceDir moves the directory src to dst. When dst already exists (an
// older attempt of the same run), the two are swapped atomically with
// renameat2(RENAME_EXCHANGE), so dst is never missing, and the old one is
// removed afterwards. Filesystems without RENAME_EXCHANGE fall back to
// moving the old directory aside first.
func replaceDir(src, dst string) error {
	err := os.Rename(src, dst)
	if err == nil || !existsErr(err) {
		return err
	}
	xerr := unix.Renameat2(unix.AT_FDCWD, src, unix.AT_FDCWD, dst, unix.RENAME_EXCHANGE)
	if xerr == nil {
		// src now holds the older attempt.
		return os.RemoveAll(src)
	}
	if !errors.Is(xerr, unix.ENOSYS) && !errors.Is(xerr, unix.EINVAL) {
		return xerr
	}
	return replaceDirAside(src, dst)
}

func existsErr(err error) bool {
	return errors.Is(err, unix.EEXIST) || errors.Is(err, unix.ENOTEMPTY)
}
