//go:build unix

package results

import (
	"os"
	"syscall"
	"testing"
)

// The run directory is an ordinary directory (not MkdirTemp's 0700).
func TestRunDirMode(t *testing.T) {
	dir := writeFixture(t, t.TempDir(), "r")
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	umask := syscall.Umask(0)
	syscall.Umask(umask)
	if want := os.FileMode(0o755 &^ umask); fi.Mode().Perm() != want {
		t.Fatalf("run directory mode %v, want %v", fi.Mode().Perm(), want)
	}
}
