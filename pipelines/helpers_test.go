package pipelines_test

import (
	"flag"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/threadmill/threadmill/pipelines"
	"github.com/threadmill/threadmill/workspace"
	"github.com/threadmill/threadmill/workspace/simulator"
)

var update = flag.Bool("update", false, "rewrite golden files")

// goldenProject is the simulated project of the golden tests.
const goldenProject = "proj_golden"

// goldenNow is the simulator's clock: when the corpus was "updated".
var goldenNow = time.Date(2026, 6, 10, 10, 0, 0, 0, time.UTC)

// goldenRun is the run every golden plan is made for: Monday 15 June 2026,
// 09:00 in Madrid, with the week before as its window.
var goldenRun = pipelines.RunInfo{
	ID:          "weekly-brief@2026-06-15T09:00:00+02:00",
	Time:        time.Date(2026, 6, 15, 7, 0, 0, 0, time.UTC),
	WindowStart: time.Date(2026, 6, 8, 7, 0, 0, 0, time.UTC),
	WindowEnd:   time.Date(2026, 6, 15, 7, 0, 0, 0, time.UTC),
}

// goldenEnv is the environment of the golden tests.
func goldenEnv(name string) (string, bool) {
	v, ok := map[string]string{
		"WORKSPACE_PROJECT": goldenProject,
		"REGION":            "EMEA",
		"EMPTY":             "",
	}[name]
	return v, ok
}

// simWorkspace is a simulator seeded with testdata/corpus, served over real
// HTTP, and a client for it.
type simWorkspace struct {
	sim    *simulator.Server
	client *workspace.Client
}

// newSimWorkspace starts a simulator of project (goldenProject when empty)
// seeded with testdata/corpus at goldenNow; TCK-2003 is aged to 1 June so
// that "updated within the run window" leaves it out.
func newSimWorkspace(t testing.TB, project string) *simWorkspace {
	t.Helper()
	if project == "" {
		project = goldenProject
	}
	sim := simulator.New(simulator.Config{ProjectID: project, Now: func() time.Time { return goldenNow }})
	if err := sim.AddDir(os.DirFS("testdata/corpus"), "."); err != nil {
		t.Fatal(err)
	}
	old, ok := sim.ArtifactByPath("Support/Tickets/TCK-2003-csv-timeout.md")
	if !ok {
		t.Fatal("corpus: TCK-2003 not seeded")
	}
	if err := sim.SetUpdatedAt(old.ID, time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sim)
	t.Cleanup(func() {
		sim.Close()
		srv.Close()
	})
	c, err := workspace.New(srv.URL, workspace.WithOrg(simulator.DefaultOrg))
	if err != nil {
		t.Fatal(err)
	}
	return &simWorkspace{sim: sim, client: c}
}

// planAll plans every step of p in file order, feeding each step the
// synthetic outputs of the steps before it: the output of an item is
// "output of <key>" and its usage is the item's estimate split in two.
func planAll(t testing.TB, p *pipelines.Pipeline, run pipelines.RunInfo, sets map[string][]pipelines.ArtifactRef) map[string][]pipelines.Item {
	t.Helper()
	prior := map[string]pipelines.StepOutput{}
	out := map[string][]pipelines.Item{}
	for _, s := range p.Steps {
		items, err := pipelines.Plan(p, s.ID, run, sets, prior)
		if err != nil {
			t.Fatalf("plan %s: %v", s.ID, err)
		}
		out[s.ID] = items
		prior[s.ID] = fakeOutputs(items)
	}
	return out
}

func fakeOutputs(items []pipelines.Item) pipelines.StepOutput {
	var so pipelines.StepOutput
	for _, it := range items {
		so.Items = append(so.Items, pipelines.ItemOutput{
			Artifact: it.Artifact,
			Output:   "output of " + it.Key,
			Usage:    workspace.Usage{InputTokens: workspace.Count(it.EstimatedTokens / 2), OutputTokens: workspace.Count(it.EstimatedTokens - it.EstimatedTokens/2)},
		})
	}
	if len(items) == 1 {
		so.Output = so.Items[0].Output
	}
	return so
}
