package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io/fs"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/threadmill/threadmill/examples"
	"github.com/threadmill/threadmill/pipelines"
	"github.com/threadmill/threadmill/workspace/simulator"
)

// run executes the command line in process and returns the exit code,
// stdout and stderr.
func runCmdline(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := execute(t.Context(), args, &out, &errb)
	return code, out.String(), errb.String()
}

// clearWorkspaceEnv makes sure the test does not see a real Workspace.
func clearWorkspaceEnv(t *testing.T) {
	for _, k := range []string{envBaseURL, envToken, envOrg, envProject, "SUMMARIZE_FOLDER"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
}

func TestValidateExamples(t *testing.T) {
	clearWorkspaceEnv(t)
	code, out, errb := runCmdline(t, "validate", "../../examples/")
	if code != exitOK {
		t.Fatalf("validate examples/: exit %d\n%s%s", code, out, errb)
	}
	files, _ := filepath.Glob("../../examples/*.yaml")
	if len(files) < 2 || out != "" || !strings.Contains(errb, fmt.Sprintf("%d pipeline files valid", len(files))) {
		t.Errorf("stdout %q, stderr %q", out, errb)
	}
}

var locatedLineRe = regexp.MustCompile(`^\S+\.yaml:\d+:\d+: \S`)

func TestValidateFiveMistakes(t *testing.T) {
	clearWorkspaceEnv(t)
	file := "../../pipelines/testdata/invalid/five-mistakes.yaml"
	code, out, errb := runCmdline(t, "validate", file)
	if code != exitFailure {
		t.Fatalf("exit %d, want %d", code, exitFailure)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 5 {
		t.Fatalf("want 5 messages, got %d:\n%s", len(lines), out)
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, file+":") || !locatedLineRe.MatchString(l) {
			t.Errorf("not a located message: %q", l)
		}
	}
	for _, want := range []string{"schedule.cron", "limits.concurrency", `did you mean "tickets"`, `did you mean "prompt"`, ".Vars.week"} {
		if !strings.Contains(out, want) {
			t.Errorf("no message about %s:\n%s", want, out)
		}
	}
	if !strings.Contains(errb, "5 problems found; 1 of 1 pipeline file invalid") {
		t.Errorf("stderr: %q", errb)
	}
}

func TestValidateDirectoriesAndMissingPaths(t *testing.T) {
	clearWorkspaceEnv(t)
	dir := t.TempDir()
	good, err := os.ReadFile("../../examples/bulk-summarize.yaml")
	if err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, filepath.Join(dir, "good.yaml"), good)
	writeTestFile(t, filepath.Join(dir, "nested", "bad.yml"), []byte("version: 1\nname: bad\nsteps:\n  - id: a\n    promt: x\n"))
	writeTestFile(t, filepath.Join(dir, ".hidden", "skipped.yaml"), []byte("not: a pipeline"))
	writeTestFile(t, filepath.Join(dir, "notes.txt"), []byte("ignored"))
	empty := t.TempDir()

	code, out, errb := runCmdline(t, "validate", dir, filepath.Join(dir, "missing.yaml"), empty)
	if code != exitFailure {
		t.Fatalf("exit %d\n%s%s", code, out, errb)
	}
	for _, want := range []string{
		filepath.Join(dir, "nested", "bad.yml") + `:5:5: unknown key "promt" in steps[0]; did you mean "prompt"?`,
		filepath.Join(dir, "missing.yaml") + ": no such file or directory",
		empty + ": no pipeline files (*.yaml, *.yml) in this directory",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "skipped.yaml") || strings.Contains(out, "good.yaml") {
		t.Errorf("hidden or valid files reported:\n%s", out)
	}

	code, out, _ = runCmdline(t, "validate", "--json", filepath.Join(dir, "nested"))
	var problems []pipelines.Error
	if err := json.Unmarshal([]byte(out), &problems); err != nil || code != exitFailure {
		t.Fatalf("--json: exit %d, %v:\n%s", code, err, out)
	}
	if len(problems) != 1 || problems[0].Line != 5 || problems[0].Col != 5 || !strings.Contains(problems[0].Msg, `"promt"`) {
		t.Errorf("--json problems: %+v", problems)
	}

	code, out, errb = runCmdline(t, "validate", filepath.Join(dir, "missing.yaml"))
	if code != exitFailure || !strings.Contains(out, "missing.yaml: no such file or directory") ||
		!strings.Contains(errb, "1 problem found; no pipeline file was checked") {
		t.Errorf("only a missing path: exit %d\nstdout %q\nstderr %q", code, out, errb)
	}

	code, _, errb = runCmdline(t, "validate")
	if code != exitUsage || !strings.Contains(errb, "usage: threadmill validate PATH...") {
		t.Errorf("validate with no path: exit %d, want %d; stderr %q", code, exitUsage, errb)
	}
}

func writeTestFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// corpusFiles counts the documents under a folder of the embedded corpus.
func corpusDocCount(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	err := fs.WalkDir(examples.Artifacts, dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && (strings.HasSuffix(p, ".md") || strings.HasSuffix(p, ".txt")) {
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestPlanSimulateBulkSummarize(t *testing.T) {
	clearWorkspaceEnv(t)
	want := corpusDocCount(t, "Support/Tickets")
	if want < 5 {
		t.Fatalf("the corpus has %d tickets", want)
	}
	code, out, errb := runCmdline(t, "plan", "--simulate", "../../examples/bulk-summarize.yaml")
	if code != exitOK {
		t.Fatalf("exit %d\n%s%s", code, out, errb)
	}
	items := regexp.MustCompile(`(?m)^\s+\d+\s+summarize/artifact_[0-9a-f]+\s+Support/Tickets/\S+\.md\s+1\s+[\d,]+\s+[\d,]+$`).FindAllString(out, -1)
	if len(items) != want {
		t.Errorf("%d item rows, want one per ticket (%d):\n%s", len(items), want, out)
	}
	if !strings.Contains(out, "project  "+simulator.DefaultProjectID) || !strings.Contains(out, "total: ") {
		t.Errorf("plan header or total missing:\n%s", out)
	}

	// SUMMARIZE_FOLDER picks another folder, subfolders included.
	t.Setenv("SUMMARIZE_FOLDER", "Product")
	code, out, errb = runCmdline(t, "plan", "--simulate", "--json", "../../examples/bulk-summarize.yaml")
	if code != exitOK {
		t.Fatalf("exit %d\n%s%s", code, out, errb)
	}
	var rep planReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if n := len(rep.Steps[0].Items); n != corpusDocCount(t, "Product") || rep.TotalItems != n {
		t.Errorf("Product: %d items, total %d, want %d", n, rep.TotalItems, corpusDocCount(t, "Product"))
	}
}

func TestPlanSimulateWeeklyJSON(t *testing.T) {
	clearWorkspaceEnv(t)
	code, out, errb := runCmdline(t, "plan", "--simulate", "--json", "../../examples/weekly-support-brief.yaml")
	if code != exitOK {
		t.Fatalf("exit %d\n%s%s", code, out, errb)
	}
	var rep planReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	tickets := corpusDocCount(t, "Support/Tickets")
	if len(rep.Steps) != 2 || len(rep.Steps[0].Items) != tickets || len(rep.Steps[1].Items) != 1 {
		t.Fatalf("steps: %+v", rep.Steps)
	}
	brief := rep.Steps[1].Items[0]
	if len(brief.ArtifactIDs) != len(rep.Sets["handbook"].Artifacts) || len(brief.ArtifactIDs) == 0 {
		t.Errorf("brief artifacts %v, handbook %v", brief.ArtifactIDs, rep.Sets["handbook"])
	}
	text := brief.Requests[0].Messages[0].Content[0].Text
	if strings.Count(text, "[output of summarize/") != tickets {
		t.Errorf("the brief's prompt should hold one placeholder per ticket:\n%s", text)
	}
	if rep.Steps[1].PriorOutputBound != int64(tickets*400) {
		t.Errorf("prior output bound %d, want %d", rep.Steps[1].PriorOutputBound, tickets*400)
	}
	var sum int64
	for _, s := range rep.Steps {
		sum += s.EstimatedTokens + s.PriorOutputBound
	}
	if rep.TotalEstimatedTokens != sum || sum == 0 {
		t.Errorf("total %d, steps sum to %d", rep.TotalEstimatedTokens, sum)
	}
	if rep.Run.WindowStart.IsZero() || !rep.Run.WindowEnd.After(rep.Run.WindowStart) || rep.Run.WindowEnd.After(time.Now()) ||
		!strings.HasPrefix(rep.Run.ID, "weekly-support-brief-") {
		t.Errorf("run: %+v", rep.Run)
	}
}

// plan counts each document at its size (props.content_length); against a
// server that reports none (artifact-size=without) it counts the fallback,
// marks the items and names the artifacts.
func TestPlanCountsTheDocuments(t *testing.T) {
	for _, tc := range []struct {
		name string
		size string
	}{{"with sizes", simulator.ArtifactSizeWith}, {"without sizes", simulator.ArtifactSizeWithout}} {
		t.Run(tc.name, func(t *testing.T) {
			unsetRunnerEnv(t)
			e := startRunnerSim(t, simulator.Config{Compat: simulator.Compat{ArtifactSize: tc.size}})
			e.setenv(t)
			args := []string{"plan", "--at", "2026-06-15T09:00:00Z", "../../examples/bulk-summarize.yaml"}
			code, out, errb := runCmdline(t, "plan", "--json", "--at", "2026-06-15T09:00:00Z", "../../examples/bulk-summarize.yaml")
			if code != exitOK {
				t.Fatalf("exit %d\n%s%s", code, out, errb)
			}
			var rep planReport
			if err := json.Unmarshal([]byte(out), &rep); err != nil {
				t.Fatal(err)
			}
			for _, it := range rep.Steps[0].Items {
				a, _ := e.sim.ArtifactByPath(it.Artifact.Folder + "/" + it.Artifact.Name)
				want := (int64(len(a.Content)) + 3) / 4
				if tc.size == simulator.ArtifactSizeWithout {
					want = pipelines.UnsizedArtifactTokens
				}
				if it.ContextTokens != want || (len(it.Unsized) == 1) != (tc.size == simulator.ArtifactSizeWithout) {
					t.Errorf("%s: context %d tokens, unsized %v; want %d", it.Key, it.ContextTokens, it.Unsized, want)
				}
			}
			code, out, errb = runCmdline(t, args...)
			if code != exitOK {
				t.Fatalf("exit %d\n%s%s", code, out, errb)
			}
			marked := regexp.MustCompile(`(?m)^\s+\d+\s+summarize/\S+\s+\S+\s+1\s+2,000\*\s+[\d,]+$`).FindAllString(out, -1)
			note := strings.Contains(out, "* estimated without a size: the Workspace reports none for 15 artifacts (artifact_")
			if tc.size == simulator.ArtifactSizeWithout && (len(marked) != 15 || !note) || tc.size == simulator.ArtifactSizeWith && (len(marked) != 0 || note) {
				t.Errorf("%d items marked, note %v:\n%s", len(marked), note, out)
			}
		})
	}
}

// TestPlanThroughEnvironment resolves against a simulator reached through
// WORKSPACE_BASE_URL, WORKSPACE_API_TOKEN and WORKSPACE_PROJECT, as against
// a real server.
func TestPlanThroughEnvironment(t *testing.T) {
	clearWorkspaceEnv(t)
	sim := simulator.New(simulator.Config{ProjectID: "proj_env", Token: "tok-1234"})
	if err := sim.AddDir(examples.Artifacts, "."); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sim)
	defer srv.Close()
	defer sim.Close()

	code, _, errb := runCmdline(t, "plan", "../../examples/bulk-summarize.yaml")
	if code != exitFailure || !strings.Contains(errb, envBaseURL) || !strings.Contains(errb, envToken) {
		t.Errorf("without the environment: exit %d, stderr %q", code, errb)
	}

	t.Setenv(envBaseURL, srv.URL)
	t.Setenv(envToken, "wrong-token")
	t.Setenv(envProject, "proj_env")
	code, _, errb = runCmdline(t, "plan", "../../examples/bulk-summarize.yaml")
	if code != exitFailure || !strings.Contains(errb, "401") || strings.Contains(errb, "wrong-token") {
		t.Errorf("wrong token: exit %d, stderr %q", code, errb)
	}

	t.Setenv(envToken, "tok-1234")
	code, out, errb := runCmdline(t, "plan", "../../examples/bulk-summarize.yaml")
	if code != exitOK || !strings.Contains(out, "project  proj_env") {
		t.Fatalf("exit %d\n%s%s", code, out, errb)
	}
	if strings.Contains(out+errb, "tok-1234") {
		t.Error("the token was printed")
	}
}

func TestPlanErrors(t *testing.T) {
	clearWorkspaceEnv(t)
	code, out, errb := runCmdline(t, "plan", "--simulate", "../../pipelines/testdata/invalid/five-mistakes.yaml")
	if code != exitFailure || out != "" || strings.Count(errb, "five-mistakes.yaml:") < 5 {
		t.Errorf("invalid file: exit %d\nstdout %q\nstderr %q", code, out, errb)
	}
	if code, _, _ := runCmdline(t, "plan", "--simulate", "--at", "next tuesday", "../../examples/bulk-summarize.yaml"); code != exitUsage {
		t.Errorf("bad --at: exit %d", code)
	}
	if code, _, _ := runCmdline(t, "plan"); code != exitUsage {
		t.Errorf("no file: exit %d", code)
	}
	t.Setenv("SUMMARIZE_FOLDER", "Support/Tickts")
	code, _, errb = runCmdline(t, "plan", "--simulate", "../../examples/bulk-summarize.yaml")
	if code != exitFailure || !strings.Contains(errb, `did you mean "Support/Tickets"?`) {
		t.Errorf("unknown folder: exit %d, stderr %q", code, errb)
	}
}

func TestSchemaCommand(t *testing.T) {
	code, out, _ := runCmdline(t, "schema")
	if code != exitOK || out != string(pipelines.Schema()) {
		t.Fatalf("exit %d; output differs from pipelines.Schema()", code)
	}
	var v map[string]any
	if err := json.Unmarshal([]byte(out), &v); err != nil || v["$schema"] != "https://json-schema.org/draft/2020-12/schema" {
		t.Errorf("not a draft 2020-12 schema: %v", err)
	}
}

var updatePlanGolden = flag.Bool("update-plan-golden", false, "rewrite testdata/plan-bulk-summarize.golden")

// TestPlanTableGolden pins the table `plan` prints, for the bulk example
// over the embedded corpus at a fixed time and run id.
func TestPlanTableGolden(t *testing.T) {
	clearWorkspaceEnv(t)
	code, out, errb := runCmdline(t, "plan", "--simulate", "--results", t.TempDir(), "--at", "2026-06-15T09:00:00Z", "--run-id", "bulk-golden", "../../examples/bulk-summarize.yaml")
	if code != exitOK {
		t.Fatalf("exit %d\n%s", code, errb)
	}
	golden := "testdata/plan-bulk-summarize.golden"
	if *updatePlanGolden {
		writeTestFile(t, golden, []byte(out))
		return
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update-plan-golden)", err)
	}
	if out != string(want) {
		t.Errorf("plan output differs from %s:\n--- got\n%s\n--- want\n%s", golden, out, want)
	}
}
