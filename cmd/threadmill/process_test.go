package main

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/threadmill/threadmill/internal/redistest"
	"github.com/threadmill/threadmill/internal/syncbuf"
	"github.com/threadmill/threadmill/results"
	"github.com/threadmill/threadmill/runstore"
	"github.com/threadmill/threadmill/workspace"
	"github.com/threadmill/threadmill/workspace/simulator"
)

// proc is a threadmill subprocess.
type proc struct {
	cmd            *exec.Cmd
	stdout, stderr *syncbuf.Buffer
	done           chan struct{}
	err            error
}

func startThreadmill(t testing.TB, env map[string]string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(threadmillBin, args...), stdout: &syncbuf.Buffer{}, stderr: &syncbuf.Buffer{}, done: make(chan struct{})}
	p.cmd.Env = runnerEnviron(env)
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
	})
	return p
}

// wait waits for the process to exit and returns its exit code.
func (p *proc) wait(t testing.TB, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Fatalf("%s did not exit within %s\nstdout:\n%s\nstderr:\n%s", strings.Join(p.cmd.Args, " "), timeout, p.stdout, p.stderr)
	}
	return p.cmd.ProcessState.ExitCode()
}

func (p *proc) kill(t testing.TB) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.done
}

// The README's main command, as a subprocess on a machine without Redis:
// the embedded default and the in-process simulator.
func TestRunSubprocessSimulate(t *testing.T) {
	dir := t.TempDir()
	file := writeRunnerPipeline(t, dir, "sub", corpusPipeline("sub", 8))
	root := filepath.Join(dir, "out")
	p := startThreadmill(t, nil, "run", "--simulate", "--results", root, "--run-id", "sub-1", file)
	if code := p.wait(t, 2*time.Minute); code != exitOK {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, p.stdout, p.stderr)
	}
	runDir := filepath.Join(root, "sub", "sub-1")
	if !strings.Contains(p.stdout.String(), "results: "+runDir) {
		t.Errorf("stdout:\n%s", p.stdout)
	}
	// Not a terminal: plain progress lines, no bar redraws.
	if se := p.stderr.String(); !strings.Contains(se, "sub-1: 35/35 items (100%)") || strings.Contains(se, "\r") {
		t.Errorf("stderr is not plain progress lines:\n%q", se)
	}
	checkEachItemOnce(t, filepath.Join(runDir, results.ResultsFile), corpusDocs+1)
	for _, f := range []string{results.RunFile, results.ErrorsFile, results.ReportFile} {
		if countJournalLines(filepath.Join(runDir, f)) == 0 && f != results.ErrorsFile {
			t.Errorf("%s is empty", f)
		}
	}
}

// `threadmill run` on the embedded default, killed with SIGKILL mid-run and
// resumed: every item lands exactly once, and no item the journal holds is
// sent to the API a second time.
func TestRunSubprocessKillAndResume(t *testing.T) {
	e := startRunnerSim(t, simulator.Config{Latency: 300 * time.Millisecond})
	dir := t.TempDir()
	file := writeRunnerPipeline(t, dir, "kr", corpusPipeline("kr", 4))
	root := filepath.Join(dir, "out")
	jpath := results.JournalPath(root, "kr", "kr-1")

	first := startThreadmill(t, e.vars(), "run", "--results", root, "--run-id", "kr-1", "--concurrency", "4", file)
	pollUntil(t, "8 journaled items", time.Minute, func() bool {
		select {
		case <-first.done:
			t.Fatalf("run exited before it was killed\nstdout:\n%s\nstderr:\n%s", first.stdout, first.stderr)
		default:
		}
		return countJournalLines(jpath) >= 8
	})
	first.kill(t)
	journaled := readResultItems(t, jpath)
	if len(journaled) >= corpusDocs {
		t.Fatalf("the run was not killed mid-way: %d items journaled", len(journaled))
	}

	second := startThreadmill(t, e.vars(), "run", "--resume", "--results", root, "--concurrency", "4", file)
	if code := second.wait(t, 2*time.Minute); code != exitOK {
		t.Fatalf("resume: exit %d\nstdout:\n%s\nstderr:\n%s", code, second.stdout, second.stderr)
	}
	if !strings.Contains(second.stderr.String(), "resuming run kr-1: ") {
		t.Errorf("resume stderr:\n%s", second.stderr)
	}
	items := checkEachItemOnce(t, filepath.Join(root, "kr", "kr-1", results.ResultsFile), corpusDocs+1)
	corr := e.sim.Counters().Correlations
	for _, j := range journaled {
		if n := corr["threadmill:kr-1:"+j.Key+":0"]; n != 1 {
			t.Errorf("journaled item %s was sent %d times", j.Key, n)
		}
		if got := items[j.Step+"|"+j.Key]; got.Output != j.Output {
			t.Errorf("item %s: the result differs from the journal", j.Key)
		}
	}
	t.Logf("%d items journaled before SIGKILL; %d interactions in all for %d items", len(journaled), e.sim.Counters().InteractionsCreated, corpusDocs+1)
}

// A worker process killed with SIGKILL mid-run, with interactions in
// flight, and another one started: every item exactly once in
// results.jsonl, and no item's interaction created twice (the checkpointed
// ones are resumed, not re-sent). The second worker then stops cleanly on
// SIGTERM.
//
// asynq's lease of a dead worker's task expires 30s after its last
// heartbeat; worker B's orphan checker enqueues the task again 5s later
// (asynq's own recoverer would take another 30s to a minute), so this test
// takes about 40s.
func TestWorkerSubprocessCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for asynq's 30s lease to expire")
	}
	e := startRunnerSim(t, simulator.Config{Async: true, Latency: 400 * time.Millisecond})
	rs := redistest.Start(t)
	dir := t.TempDir()
	file := writeRunnerPipeline(t, dir, "crash", corpusPipeline("crash", 4))
	root := filepath.Join(dir, "out")
	env := e.vars()
	env[envRedisURL] = rs.URL()

	enq := startThreadmill(t, env, "enqueue", "--run-id", "crash-1", file)
	if code := enq.wait(t, time.Minute); code != exitOK || strings.TrimSpace(enq.stdout.String()) != "crash-1" {
		t.Fatalf("enqueue: exit %d\nstdout:\n%s\nstderr:\n%s", code, enq.stdout, enq.stderr)
	}

	store := runstore.New(rs.Client(t), "")
	workerArgs := []string{"worker", "--concurrency", "4", "--results", root, "--log-level", "warn"}
	a := startThreadmill(t, env, workerArgs...)
	var pending []workspace.Interaction
	pollUntil(t, "8 items done and an interaction in flight", 2*time.Minute, func() bool {
		st, err := store.Run(t.Context(), "crash-1")
		if err != nil || st.Done < 8 {
			return false
		}
		pending = pending[:0]
		for _, in := range e.sim.Interactions() {
			if in.State == workspace.StateProcessing {
				pending = append(pending, in)
			}
		}
		return len(pending) > 0
	})
	a.kill(t)
	t.Logf("worker A killed with %d interactions in flight", len(pending))

	b := startThreadmill(t, env, workerArgs...)
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	st, err := store.Wait(ctx, "crash-1")
	if err != nil {
		t.Fatalf("run did not finish: %v\nworker B stderr:\n%s", err, b.stderr)
	}
	if st.Status != runstore.StatusSucceeded {
		t.Fatalf("run %s: %+v", st.Status, st)
	}
	if err := b.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := b.wait(t, time.Minute); code != exitOK {
		t.Errorf("worker B exited %d on SIGTERM\nstderr:\n%s", code, b.stderr)
	}

	items := checkEachItemOnce(t, filepath.Join(st.ResultDir, results.ResultsFile), corpusDocs+1)
	c := e.sim.Counters()
	for corr, n := range c.Correlations {
		if n != 1 {
			t.Errorf("%s: %d interactions, want 1", corr, n)
		}
	}
	if c.InteractionsCreated != corpusDocs+1 {
		t.Errorf("%d interactions created for %d items", c.InteractionsCreated, corpusDocs+1)
	}
	// Each interaction in flight at the crash became its item's result.
	for _, in := range pending {
		found := false
		for _, it := range items {
			if len(it.InteractionIDs) > 0 && it.InteractionIDs[0] == in.ID {
				found = true
			}
		}
		if !found {
			t.Errorf("interaction %s, in flight at the crash, is in no result", in.ID)
		}
	}
}

// SIGINT stops `threadmill run` gracefully: the items in flight finish and
// are journaled, the exit says how to resume, and the resume sends only the
// items that never finished.
func TestRunSubprocessInterruptAndResume(t *testing.T) {
	e := startRunnerSim(t, simulator.Config{Latency: 300 * time.Millisecond})
	dir := t.TempDir()
	file := writeRunnerPipeline(t, dir, "intr", corpusPipeline("intr", 4))
	root := filepath.Join(dir, "out")
	jpath := results.JournalPath(root, "intr", "intr-1")

	first := startThreadmill(t, e.vars(), "run", "--results", root, "--run-id", "intr-1", "--concurrency", "4", file)
	pollUntil(t, "4 journaled items", time.Minute, func() bool { return countJournalLines(jpath) >= 4 })
	if err := first.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if code := first.wait(t, time.Minute); code != exitFailure {
		t.Fatalf("interrupted run: exit %d, want %d\nstderr:\n%s", code, exitFailure, first.stderr)
	}
	se := first.stderr.String()
	if !strings.Contains(se, "interrupted: ") || !strings.Contains(se, "resume with: threadmill run --resume --run-id intr-1 "+file) {
		t.Fatalf("interrupted run's stderr:\n%s", se)
	}
	// Everything that was sent finished and was journaled: nothing is paid twice.
	journaled := readResultItems(t, jpath)
	sent := e.sim.Counters().InteractionsCreated
	if sent != len(journaled) {
		t.Errorf("%d interactions created before the interrupt, %d items journaled", sent, len(journaled))
	}

	second := startThreadmill(t, e.vars(), "run", "--resume", "--run-id", "intr-1", "--results", root, file)
	if code := second.wait(t, 2*time.Minute); code != exitOK {
		t.Fatalf("resume: exit %d\nstderr:\n%s", code, second.stderr)
	}
	checkEachItemOnce(t, filepath.Join(root, "intr", "intr-1", results.ResultsFile), corpusDocs+1)
	c := e.sim.Counters()
	if c.InteractionsCreated != corpusDocs+1 {
		t.Errorf("%d interactions for %d items across the interrupt", c.InteractionsCreated, corpusDocs+1)
	}
	for k, n := range c.Correlations {
		if n != 1 {
			t.Errorf("%s sent %d times", k, n)
		}
	}
}
