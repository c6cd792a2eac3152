package results

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestReserveHelperProcess is not a test: run by holdInChild, it reserves a
// run id, says so on stdout and holds it until its stdin closes or it is
// killed.
func TestReserveHelperProcess(t *testing.T) {
	spec := os.Getenv("RESULTS_RESERVE_HELPER")
	if spec == "" {
		t.Skip("helper process")
	}
	root, id, _ := strings.Cut(spec, "|")
	if _, err := Reserve(root, "weekly-support-brief", id); err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println("reserved")
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n') // until the parent closes stdin
	os.Exit(0)
}

// holdInChild reserves runID under root in a child process and returns it
// once the child holds the reservation.
func holdInChild(t *testing.T, root, runID string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestReserveHelperProcess$")
	cmd.Env = append(os.Environ(), "RESULTS_RESERVE_HELPER="+root+"|"+runID)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = stdin.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if strings.TrimSpace(line) != "reserved" {
		t.Fatalf("child: %q, %v", line, err)
	}
	return cmd
}

func TestReserveIsExclusiveAndReleased(t *testing.T) {
	root := t.TempDir()
	r, err := Reserve(root, "weekly-support-brief", "brief-1")
	if err != nil {
		t.Fatal(err)
	}
	lock := LockPath(root, "weekly-support-brief", "brief-1")
	if _, err := os.Stat(lock); err != nil {
		t.Fatalf("no reservation file: %v", err)
	}

	// A second reservation of the same id, in this process, is refused and
	// names the holder.
	_, err = Reserve(root, "weekly-support-brief", "brief-1")
	var busy *BusyError
	if !errors.As(err, &busy) || !errors.Is(err, ErrRunBusy) || busy.Owner.PID != os.Getpid() {
		t.Fatalf("second Reserve: %v, want a BusyError naming pid %d", err, os.Getpid())
	}
	if !strings.Contains(err.Error(), fmt.Sprintf("pid %d", os.Getpid())) || !strings.Contains(err.Error(), lock) {
		t.Errorf("message %q does not name the holder and the file", err)
	}
	// Another id is free.
	r2, err := Reserve(root, "weekly-support-brief", "brief-2")
	if err != nil {
		t.Fatal(err)
	}
	_ = r2.Release()

	if err := r.Release(); err != nil {
		t.Fatal(err)
	}
	if err := r.Release(); err != nil {
		t.Errorf("second Release: %v", err)
	}
	if _, err := os.Stat(lock); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("reservation file left after Release: %v", err)
	}
	r, err = Reserve(root, "weekly-support-brief", "brief-1")
	if err != nil {
		t.Fatalf("Reserve after Release: %v", err)
	}
	_ = r.Release()
	if names := hiddenEntries(t, filepath.Join(root, "weekly-support-brief")); len(names) != 0 {
		t.Errorf("hidden files left: %v", names)
	}
}

// A reservation held by another process blocks the id and a Commit of its
// directory; once that process dies (SIGKILL, no cleanup), the kernel has
// dropped its lock and the stale file blocks nothing.
func TestReservationOfAnotherProcess(t *testing.T) {
	root := t.TempDir()
	old := writeFixture(t, root, "brief-1") // an earlier attempt, committed
	before := readLines(t, filepath.Join(old, ResultsFile))

	child := holdInChild(t, root, "brief-1")
	_, err := Reserve(root, "weekly-support-brief", "brief-1")
	var busy *BusyError
	if !errors.As(err, &busy) || busy.Owner.PID != child.Process.Pid {
		t.Fatalf("Reserve while pid %d holds it: %v", child.Process.Pid, err)
	}

	// A writer of the same run id in this process is refused at Commit and
	// leaves the directory in place alone.
	w, err := Create(root, "weekly-support-brief", "brief-1")
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Add(fixtureItems()[0]); err != nil {
		t.Fatal(err)
	}
	_, err = w.Commit(fixtureRun(), "other run's report")
	if !errors.Is(err, ErrRunBusy) || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", child.Process.Pid)) {
		t.Fatalf("Commit while another process holds the run: %v, want ErrRunBusy naming pid %d", err, child.Process.Pid)
	}
	if after := readLines(t, filepath.Join(old, ResultsFile)); len(after) != len(before) {
		t.Errorf("the directory in place was replaced: %d lines, had %d", len(after), len(before))
	}
	if names := hiddenEntries(t, filepath.Join(root, "weekly-support-brief")); len(names) != 1 || names[0] != ".brief-1.lock" {
		t.Errorf("hidden entries %v, want only the child's lock", names)
	}

	// The holder dies without cleaning up.
	if err := child.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = child.Wait()
	if _, err := os.Stat(LockPath(root, "weekly-support-brief", "brief-1")); err != nil {
		t.Fatalf("the killed child's lock file should be left behind: %v", err)
	}
	r, err := Reserve(root, "weekly-support-brief", "brief-1")
	if err != nil {
		t.Fatalf("Reserve after the holder died: %v", err)
	}
	// This process holds it now: its Commit goes ahead.
	dir := writeFixture(t, root, "brief-1")
	if dir != old {
		t.Errorf("committed to %s, want %s", dir, old)
	}
	_ = r.Release()
	// And with nobody holding it, too.
	writeFixture(t, root, "brief-1")
}
