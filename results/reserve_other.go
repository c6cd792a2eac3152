//go:build !unix

package results

import (
	"errors"
	"io/fs"
	"os"
)

// fileLock is a file created exclusively: without flock(2), a run that
// crashed leaves its lock file behind, to be removed by hand.
type fileLock struct{ f *os.File }

// lockFile creates path exclusively and writes content into it; a file that
// exists is ErrRunBusy.
func lockFile(path string, content []byte) (fileLock, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, fs.ErrExist) {
		return fileLock{}, ErrRunBusy
	}
	if err != nil {
		return fileLock{}, err
	}
	_, _ = f.Write(content)
	return fileLock{f: f}, nil
}

// unlock closes the file (Release has removed it).
func (l fileLock) unlock() error { return l.f.Close() }
