package examples_test

import (
	"io/fs"
	"path"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/threadmill/threadmill/examples"
)

// TestCorpus guards the shape the examples, tests and README rely on: the
// folders, the ticket naming, and documents of 150 to 600 words of UTF-8
// text.
func TestCorpus(t *testing.T) {
	byDir := map[string][]string{}
	err := fs.WalkDir(examples.Artifacts, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		data, err := fs.ReadFile(examples.Artifacts, p)
		if err != nil {
			return err
		}
		if !utf8.Valid(data) {
			t.Errorf("%s is not UTF-8", p)
		}
		if ext := path.Ext(p); ext != ".md" && ext != ".txt" {
			t.Errorf("%s: extension %q, want .md or .txt", p, ext)
		}
		if n := len(strings.Fields(string(data))); n < 150 || n > 600 {
			t.Errorf("%s has %d words, want 150 to 600", p, n)
		}
		byDir[path.Dir(p)] = append(byDir[path.Dir(p)], path.Base(p))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{
		"Support/Tickets":       15,
		"Meetings":              6,
		"Policies":              6,
		"Product":               2,
		"Product/Release-Notes": 3,
		"Onboarding":            2,
	}
	total := 0
	for dir, n := range want {
		if len(byDir[dir]) != n {
			t.Errorf("%s: %d documents, want %d", dir, len(byDir[dir]), n)
		}
		total += n
	}
	if len(byDir) != len(want) || total != 34 {
		t.Errorf("folders = %v", byDir)
	}
	ticket := regexp.MustCompile(`^TCK-10(4[1-9]|5[0-5])-[a-z0-9-]+\.md$`)
	for _, name := range byDir["Support/Tickets"] {
		if !ticket.MatchString(name) {
			t.Errorf("ticket file name %q", name)
		}
		data, _ := fs.ReadFile(examples.Artifacts, "Support/Tickets/"+name)
		for _, field := range []string{"**Customer:**", "**Opened:**", "**Priority:**", "**Status:**"} {
			if !strings.Contains(string(data), field) {
				t.Errorf("%s lacks %s", name, field)
			}
		}
	}
	if !slices.Contains(byDir["Policies"], "support-handbook.md") {
		t.Error("Policies/support-handbook.md is missing")
	}
}
