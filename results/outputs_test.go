package results

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCSVGolden pins the items CSV of the weekly fixture, with one extra
// column appended to the default list (as structured outputs will add).
func TestCSVGolden(t *testing.T) {
	root := t.TempDir()
	w, err := Create(root, "weekly-support-brief", "csv-run")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	cols := append(DefaultCSVColumns(), CSVColumn{"attempts", func(it Item) string { return strings.Repeat("I", it.Attempts) }})
	if err := w.EnableCSV("items.csv", cols); err != nil {
		t.Fatal(err)
	}
	for _, it := range fixtureItems() {
		if err := w.Add(it); err != nil {
			t.Fatal(err)
		}
	}
	dir, err := w.Commit(fixtureRun(), "")
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "items.csv"))
	if err != nil {
		t.Fatal(err)
	}
	checkGoldenFile(t, got, filepath.Join("testdata", "weekly", "items.csv"))
	if err := w.EnableCSV("x.csv", cols); err == nil {
		t.Errorf("EnableCSV after Commit succeeded")
	}
}

func TestAddFileIsAtomicWithTheRunAndRefusesEscapes(t *testing.T) {
	root := t.TempDir()
	w, err := Create(root, "p", "files-run")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	for _, bad := range []string{"", "../x.md", "/etc/x", "run.json", "a/../../x", "a/.hidden"} {
		if _, err := w.AddFile(bad, []byte("x")); err == nil {
			t.Errorf("AddFile(%q) succeeded", bad)
		}
	}
	names := []string{}
	for _, n := range []string{"summaries/a.md", "summaries/a.md", "summaries/a.md", "b"} {
		got, err := w.AddFile(n, []byte("text of "+n))
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, got)
	}
	if strings.Join(names, ",") != "summaries/a.md,summaries/a-2.md,summaries/a-3.md,b" {
		t.Errorf("names %v", names)
	}
	if _, err := os.Stat(filepath.Join(root, "p", "files-run")); !os.IsNotExist(err) {
		t.Fatalf("the run directory exists before Commit (%v)", err)
	}
	dir, err := w.Commit(Run{}, "")
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "summaries", "a-2.md")); err != nil || string(b) != "text of summaries/a.md" {
		t.Errorf("summaries/a-2.md: %q %v", b, err)
	}
	if r, err := ReadRun(dir); err != nil || r.Files != 4 {
		t.Errorf("run.json files: %+v %v, want 4", r, err)
	}
}

func TestJSONFieldColumns(t *testing.T) {
	cols := JSONFieldColumns([]string{"severity", "state", "tags", "count", "missing"}, DefaultCSVColumns())
	var names []string
	for _, c := range cols {
		names = append(names, c.Name)
	}
	if got := strings.Join(names, ","); got != "severity,json.state,tags,count,missing" {
		t.Fatalf("columns %s", got)
	}
	it := Item{JSON: json.RawMessage(`{"severity": "P1", "state": "open", "tags": ["a", "b"], "count": 3, "missing": null}`)}
	var got []string
	for _, c := range cols {
		got = append(got, c.Value(it))
	}
	if g := strings.Join(got, "|"); g != `P1|open|["a","b"]|3|` {
		t.Errorf("values %s", g)
	}
	if v := cols[0].Value(Item{}); v != "" {
		t.Errorf("an item without json: %q", v)
	}
}
