package pipelines_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/threadmill/threadmill/pipelines"
)

// checkGolden compares got with the golden file, or rewrites it with -update.
func checkGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from what the code produces now:\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// TestInvalidGolden loads every testdata/invalid/*.yaml and compares the
// messages, one per line, with the .err file beside it.
func TestInvalidGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/invalid/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 30 {
		t.Fatalf("want at least 30 invalid cases, have %d", len(files))
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".yaml"), func(t *testing.T) {
			p, err := pipelines.Load(f, goldenEnv)
			if err == nil {
				t.Fatalf("%s loaded without error: %+v", f, p)
			}
			if p != nil {
				t.Error("Load returned a pipeline along with an error")
			}
			var list pipelines.ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("error is %T, not an ErrorList: %v", err, err)
			}
			for i, e := range list {
				if e.File != f {
					t.Errorf("message %d names file %q, want %q", i, e.File, f)
				}
				if i > 0 {
					prev := list[i-1]
					if prev.Line > e.Line || (prev.Line == e.Line && prev.Col > e.Col) {
						t.Errorf("messages are not sorted by position: %v before %v", prev, e)
					}
				}
			}
			checkGolden(t, strings.TrimSuffix(f, ".yaml")+".err", []byte(err.Error()+"\n"))
		})
	}
}

// TestValidGolden loads every testdata/valid/*.yaml, resolves its sets
// against the simulator (seeded with testdata/corpus) over HTTP, plans every
// step and compares the result with the .plan.json file beside it.
func TestValidGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/valid/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no valid cases")
	}
	ws := newSimWorkspace(t, "")
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".yaml"), func(t *testing.T) {
			p, err := pipelines.Load(f, goldenEnv)
			if err != nil {
				t.Fatal(err)
			}
			sets, err := pipelines.Resolve(context.Background(), ws.client, p, goldenRun)
			if err != nil {
				t.Fatal(err)
			}
			plan := planAll(t, p, goldenRun, sets)
			again := planAll(t, p, goldenRun, sets)
			if !reflect.DeepEqual(plan, again) {
				t.Error("planning twice gave different plans")
			}
			got, err := json.MarshalIndent(struct {
				Pipeline *pipelines.Pipeline                `json:"pipeline"`
				Sets     map[string][]pipelines.ArtifactRef `json:"sets"`
				Steps    map[string][]pipelines.Item        `json:"steps"`
			}{p, sets, plan}, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			checkGolden(t, strings.TrimSuffix(f, ".yaml")+".plan.json", append(got, '\n'))
		})
	}
}
