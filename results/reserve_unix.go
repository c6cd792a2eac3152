//go:build unix

package results

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// fileLock is an open file locked with flock(2).
type fileLock struct{ f *os.File }

// lockFile creates (or opens) path, locks it exclusively without waiting
// and writes content into it. A lock held elsewhere is ErrRunBusy. The
// lock belongs to the open file: the kernel releases it when the file is
// closed or the process dies.
func lockFile(path string, content []byte) (fileLock, error) {
	for range 10 {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			return fileLock{}, err
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			_ = f.Close()
			if errors.Is(err, unix.EWOULDBLOCK) {
				return fileLock{}, ErrRunBusy
			}
			return fileLock{}, fmt.Errorf("flock: %w", err)
		}
		// The holder before us may have removed the file between our open
		// and our lock: then we locked an orphan, and start over.
		fi, err1 := f.Stat()
		pi, err2 := os.Stat(path)
		if err1 != nil || err2 != nil || !os.SameFile(fi, pi) {
			_ = f.Close()
			continue
		}
		if err := f.Truncate(0); err == nil {
			_, _ = f.WriteAt(content, 0) // informational only
		}
		return fileLock{f: f}, nil
	}
	return fileLock{}, errors.New("the lock file keeps being replaced")
}

// unlock closes the file, which drops the lock.
func (l fileLock) unlock() error { return l.f.Close() }
