package main

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/threadmill/threadmill/pipelines"
	"github.com/threadmill/threadmill/results"
	"github.com/threadmill/threadmill/workspace/simulator"
)

var summaryRunID = regexp.MustCompile(`(?m)^run (\S+) succeeded: `)

// Two embedded runs of one pipeline started at the same instant, in one
// process (each with its own in-process Redis) against one simulator over
// HTTP: their ids differ (the second gets -2), each pays for every item once,
// and each writes its own directory.
func TestTwoEmbeddedRunsAtOnce(t *testing.T) {
	unsetRunnerEnv(t)
	e := startRunnerSim(t, simulator.Config{Async: true, Latency: 10 * time.Millisecond})
	e.setenv(t)
	dir := t.TempDir()
	file := writeRunnerPipeline(t, dir, "twin", corpusPipeline("twin", 8))
	root := filepath.Join(dir, "out")
	const items = corpusDocs + 1

	// Start both early in a second, so that they pick their ids in the same
	// second (the collision under test) rather than straddle two.
	pollUntil(t, "the start of a second", 2*time.Second, func() bool { return time.Now().Nanosecond() < int(300*time.Millisecond) })
	type outcome struct {
		code           int
		stdout, stderr string
	}
	out := make([]outcome, 2)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range out {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			code, stdout, stderr := runnerCLI(t.Context(), "run", "--results", root, "--progress", "none", file)
			out[i] = outcome{code, stdout, stderr}
		}()
	}
	close(start)
	wg.Wait()

	var ids []string
	for i, o := range out {
		if o.code != exitOK {
			t.Fatalf("run %d: exit %d\nstdout:\n%s\nstderr:\n%s", i, o.code, o.stdout, o.stderr)
		}
		m := summaryRunID.FindStringSubmatch(o.stdout)
		if m == nil {
			t.Fatalf("run %d names no run:\n%s", i, o.stdout)
		}
		ids = append(ids, m[1])
	}
	slices.Sort(ids)
	if ids[0] == ids[1] {
		t.Fatalf("both runs got the id %s", ids[0])
	}
	if ids[1] != ids[0]+"-2" {
		t.Errorf("ids %q: want <pipeline>-<UTC time> and the same with -2 (two starts in one second)", ids)
	}
	for _, id := range ids {
		checkEachItemOnce(t, filepath.Join(root, "twin", id, results.ResultsFile), items)
		run, err := results.ReadRun(filepath.Join(root, "twin", id))
		if err != nil || run.RunID != id || run.Total != items {
			t.Errorf("run.json of %s: %+v, %v", id, run, err)
		}
	}
	c := e.sim.Counters()
	if c.InteractionsCreated != 2*items {
		t.Errorf("the simulator created %d interactions, want %d (each item of each run once)", c.InteractionsCreated, 2*items)
	}
	if len(c.Correlations) != 2*items {
		t.Errorf("%d correlation ids, want %d", len(c.Correlations), 2*items)
	}
	for corr, n := range c.Correlations {
		if n != 1 {
			t.Errorf("correlation id %s sent %d times", corr, n)
		}
	}
	// Nothing is left but the two runs and latest: no reservation, journal
	// or temporary directory.
	des, err := os.ReadDir(filepath.Join(root, "twin"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	want := []string{ids[0], ids[1], results.LatestLink}
	slices.Sort(names)
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Errorf("results/twin holds %q, want %q", names, want)
	}
}

// A run id held by a live run is refused to a second run that asks for it
// with --run-id; no request is sent for it.
func TestRunIDInUseIsRefused(t *testing.T) {
	unsetRunnerEnv(t)
	e := startRunnerSim(t, simulator.Config{})
	e.setenv(t)
	dir := t.TempDir()
	file := writeRunnerPipeline(t, dir, "busy", corpusPipeline("busy", 2))
	root := filepath.Join(dir, "out")
	r, err := results.Reserve(root, "busy", "busy-1")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Release()
	e.sim.ResetCounters()
	code, stdout, stderr := runnerCLI(t.Context(), "run", "--run-id", "busy-1", "--results", root, "--progress", "none", file)
	if code != exitFailure || !strings.Contains(stderr, "run busy-1 is already running (pid ") {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if c := e.sim.Counters(); c.InteractionsCreated != 0 {
		t.Errorf("%d interactions created for a refused run", c.InteractionsCreated)
	}
}

// A run that never started (a folder that does not exist, a token refused
// with the preflight off) leaves no journal, no metadata and no reservation
// behind.
func TestRunThatNeverStartedLeavesNoJournal(t *testing.T) {
	unsetRunnerEnv(t)
	e := startRunnerSim(t, simulator.Config{})
	e.setenv(t)
	dir := t.TempDir()
	root := filepath.Join(dir, "out")
	badFolder := writeRunnerPipeline(t, dir, "nofolder", `version: 1
name: nofolder
artifacts:
  docs: { folder: "No/Such/Folder" }
steps:
  - id: s
    for_each: docs
    prompt: "Summarize {{ .Artifact.Name }}."
`)
	code, stdout, stderr := runnerCLI(t.Context(), "run", "--results", root, "--progress", "none", badFolder)
	if code != exitFailure {
		t.Fatalf("bad folder: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	checkNoLeftovers(t, filepath.Join(root, "nofolder"))

	file := writeRunnerPipeline(t, dir, "badtoken", corpusPipeline("badtoken", 2))
	t.Setenv(envToken, "not-the-token")
	code, stdout, stderr = runnerCLI(t.Context(), "run", "--preflight-timeout", "0", "--results", root, "--progress", "none", file)
	if code != exitFailure {
		t.Fatalf("bad token: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	checkNoLeftovers(t, filepath.Join(root, "badtoken"))
}

// checkNoLeftovers fails when dir holds a journal, its metadata, a
// reservation or a temporary directory.
func checkNoLeftovers(t *testing.T, dir string) {
	t.Helper()
	des, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range des {
		if n := de.Name(); strings.Contains(n, ".journal.") || strings.HasSuffix(n, ".lock") || strings.Contains(n, ".tmp-") {
			t.Errorf("%s left in %s", n, dir)
		}
	}
}

// writeJournal writes the journal of an interrupted run: its metadata and
// items (none: a journal left by a run that stopped before any item).
func writeJournal(t *testing.T, root string, p *pipelines.Pipeline, file, id string, hash string, items []results.Item, mod time.Time) string {
	t.Helper()
	jpath := results.JournalPath(root, p.Name, id)
	run := pipelines.RunInfo{ID: id, Time: time.Now().UTC().Truncate(time.Second)}
	if err := writeMeta(metaPath(jpath), resumeMeta{Pipeline: p.Name, File: file, PipelineHash: hash, Run: run}); err != nil {
		t.Fatal(err)
	}
	if items != nil {
		j, err := results.OpenJournal(jpath)
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range items {
			if err := j.Append(it); err != nil {
				t.Fatal(err)
			}
		}
		if err := j.Close(); err != nil {
			t.Fatal(err)
		}
	}
	for _, path := range []string{jpath, metaPath(jpath)} {
		if err := os.Chtimes(path, mod, mod); err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
	}
	return jpath
}

// --resume skips the stale journals (another version of the file, no item,
// older than the run retention), says which and why, and resumes the newest
// resumable one; with only stale ones it resumes nothing.
func TestResumeIgnoresStaleJournals(t *testing.T) {
	unsetRunnerEnv(t)
	e := startRunnerSim(t, simulator.Config{})
	e.setenv(t)
	dir := t.TempDir()
	file := writeRunnerPipeline(t, dir, "stale", corpusPipeline("stale", 8))
	root := filepath.Join(dir, "out")
	if code, stdout, stderr := runnerCLI(t.Context(), "run", "--results", root, "--run-id", "stale-0", "--progress", "none", file); code != exitOK {
		t.Fatalf("first run: exit %d\n%s\n%s", code, stdout, stderr)
	}
	done := readResultItems(t, filepath.Join(root, "stale", "stale-0", results.ResultsFile))
	p, err := pipelines.Load(file, os.LookupEnv)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	writeJournal(t, root, p, file, "stale-good", p.Hash, done[:10], now.Add(-time.Hour))
	writeJournal(t, root, p, file, "stale-hash", "0123456789abcdef", done[:10], now.Add(-3*time.Minute))
	writeJournal(t, root, p, file, "stale-empty", p.Hash, nil, now.Add(-2*time.Minute))
	writeJournal(t, root, p, file, "stale-old", p.Hash, done[:10], now.Add(-8*24*time.Hour))

	e.sim.ResetCounters()
	code, stdout, stderr := runnerCLI(t.Context(), "run", "--resume", "--results", root, "--progress", "none", file)
	if code != exitOK {
		t.Fatalf("resume: exit %d\n%s\n%s", code, stdout, stderr)
	}
	for _, want := range []string{
		"ignoring the journal of run stale-hash (" + results.JournalPath(root, "stale", "stale-hash") + "): " + file + " changed since run stale-hash was interrupted",
		"ignoring the journal of run stale-empty (" + results.JournalPath(root, "stale", "stale-empty") + "): it holds no finished item",
		"resuming run stale-good: 10 finished items",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	if strings.Contains(stderr, "stale-old") {
		t.Errorf("the older journal was reported before the newest resumable one was found... or resumed:\n%s", stderr)
	}
	if c := e.sim.Counters(); c.InteractionsCreated != corpusDocs+1-10 {
		t.Errorf("the resumed run created %d interactions, want %d", c.InteractionsCreated, corpusDocs+1-10)
	}
	checkEachItemOnce(t, filepath.Join(root, "stale", "stale-good", results.ResultsFile), corpusDocs+1)

	// Now only stale journals are left: nothing is resumed, each says why.
	e.sim.ResetCounters()
	code, stdout, stderr = runnerCLI(t.Context(), "run", "--resume", "--results", root, "--progress", "none", file)
	if code != exitFailure {
		t.Fatalf("resume of stale journals only: exit %d\n%s\n%s", code, stdout, stderr)
	}
	for _, want := range []string{
		"run stale-hash (", "run stale-empty (",
		"ignoring the journal of run stale-old (" + results.JournalPath(root, "stale", "stale-old") + "): it was last written ",
		"more than the run retention (168h0m0s)",
		"nothing to resume: no resumable run of stale in " + filepath.Join(root, "stale") + " (3 stale journals ignored",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	if c := e.sim.Counters(); c.InteractionsCreated != 0 {
		t.Errorf("%d interactions created with nothing to resume", c.InteractionsCreated)
	}
	// The stale journals are reported, never removed.
	for _, id := range []string{"stale-hash", "stale-empty", "stale-old"} {
		if _, err := os.Stat(metaPath(results.JournalPath(root, "stale", id))); err != nil {
			t.Errorf("journal of %s: %v", id, err)
		}
	}

	// Asked for by id, a stale journal is an error saying why.
	code, _, stderr = runnerCLI(t.Context(), "run", "--resume", "--run-id", "stale-empty", "--results", root, "--progress", "none", file)
	if code != exitFailure || !strings.Contains(stderr, "cannot resume run stale-empty: it holds no finished item") {
		t.Errorf("resume --run-id stale-empty: exit %d\n%s", code, stderr)
	}
}

// An embedded run interrupted before any item finished has nothing to
// resume and says so; it leaves no journal.
func TestInterruptedBeforeAnyItemLeavesNoJournal(t *testing.T) {
	unsetRunnerEnv(t)
	e := startRunnerSim(t, simulator.Config{Async: true, Latency: time.Hour})
	e.setenv(t)
	dir := t.TempDir()
	file := writeRunnerPipeline(t, dir, "early", corpusPipeline("early", 2))
	root := filepath.Join(dir, "out")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() {
		// Interrupt once the first interactions are created (and will
		// never finish).
		for e.sim.Counters().InteractionsCreated < 2 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(10 * time.Millisecond): // polling the simulator's counters
			}
		}
		cancel()
	}()
	code, stdout, stderr := runnerCLI(ctx, "run", "--results", root, "--progress", "none", "--shutdown-timeout", "100ms", file)
	if code != exitFailure || !strings.Contains(stderr, "interrupted before any item finished: nothing to resume") {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	checkNoLeftovers(t, filepath.Join(root, "early"))
}
