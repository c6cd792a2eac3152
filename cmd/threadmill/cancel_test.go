package main

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/threadmill/threadmill/internal/redistest"
	"github.com/threadmill/threadmill/workspace/simulator"
)

// `cancel` as a user types it, against a worker in process: the run stops
// with its interactions in flight cancelled, `status --watch` and `enqueue
// --wait` exit 4, and `runs` lists it as canceled.
func TestCancelCommand(t *testing.T) {
	unsetRunnerEnv(t)
	e := startRunnerSim(t, simulator.Config{Async: true, Latency: time.Minute})
	e.setenv(t)
	rs := redistest.Start(t)
	t.Setenv(envRedisURL, rs.URL())
	dir := t.TempDir()
	file := writeRunnerPipeline(t, dir, "dist", corpusPipeline("dist", 4))
	root := filepath.Join(dir, "out")

	werr := startWorkerCmd(t, root)

	waited := make(chan [3]string, 1)
	go func() {
		code, stdout, stderr := runnerCLI(t.Context(), "enqueue", "--wait", "--run-id", "dist-c", "--progress", "none", file)
		waited <- [3]string{string(rune('0' + code)), stdout, stderr}
	}()
	deadline := time.Now().Add(30 * time.Second)
	for e.sim.Counters().InteractionsCreated < 4 {
		if time.Now().After(deadline) {
			t.Fatalf("no interactions in flight\n%s", werr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}

	code, stdout, stderr := runnerCLI(t.Context(), "cancel", "--reason", "wrong folder", "dist-c")
	if code != exitOK || !strings.Contains(stderr, "run dist-c (running) canceled: wrong folder") || !strings.Contains(stdout, "run dist-c canceled:") {
		t.Fatalf("cancel: exit %d\n%s\n%s\nworker:\n%s", code, stdout, stderr, werr.String())
	}
	if c := e.sim.Counters(); c.InteractionsCancelled != 4 {
		t.Errorf("%d interactions cancelled through the API, want the 4 in flight", c.InteractionsCancelled)
	}
	select {
	case r := <-waited:
		if r[0] != "4" || !strings.Contains(r[2], "run dist-c canceled") {
			t.Errorf("enqueue --wait on a canceled run: exit %s\n%s\n%s", r[0], r[1], r[2])
		}
	case <-time.After(30 * time.Second):
		t.Fatal("enqueue --wait did not return after the cancel")
	}
	if code, _, _ := runnerCLI(t.Context(), "status", "--watch", "--progress", "none", "dist-c"); code != exitCanceled {
		t.Errorf("status --watch of a canceled run: exit %d, want %d", code, exitCanceled)
	}
	if code, stdout, _ := runnerCLI(t.Context(), "cancel", "dist-c"); code != exitOK || !strings.Contains(stdout, "already finished (canceled)") {
		t.Errorf("cancel again: exit %d\n%s", code, stdout)
	}
	code, stdout, _ = runnerCLI(t.Context(), "runs", "--results", root)
	if code != exitOK || !strings.Contains(strings.Join(strings.Fields(stdout), " "), "dist-c dist canceled") {
		t.Errorf("runs: exit %d\n%s", code, stdout)
	}
	if code, _, stderr := runnerCLI(t.Context(), "cancel", "no-such-run"); code != exitFailure || !strings.Contains(stderr, "not found") {
		t.Errorf("cancel of an unknown run: exit %d\n%s", code, stderr)
	}
}
