package main

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/threadmill/threadmill/pipelines"
)

// within reports whether path is dir or inside it.
func within(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && filepath.IsLocal(rel) || rel == "."
}

// sourceDirs returns the module's root directory and the directories of
// its packages, as `go list ./...` finds them.
func sourceDirs(t *testing.T) (root string, pkgDirs []string) {
	t.Helper()
	list := func(args ...string) []string {
		cmd := exec.Command("go", args...)
		cmd.Dir = "../.."
		var errb bytes.Buffer
		cmd.Stderr = &errb
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, errb.String())
		}
		return strings.Fields(string(out))
	}
	root = list("list", "-m", "-f", "{{.Dir}}")[0]
	pkgDirs = list("list", "-e", "-f", "{{.Dir}}", "./...")
	if len(pkgDirs) < 10 {
		t.Fatalf("go list ./... found %d packages", len(pkgDirs))
	}
	return root, pkgDirs
}

// TestDefaultDataDirsAreNotSourceDirs checks the default results root and
// the default pipelines directory, taken from the repository root, are no
// directory of this module's packages, contain none (deleting the results
// would delete sources) and lie inside none but the module root (results
// would land among sources, pipeline files among testdata).
func TestDefaultDataDirsAreNotSourceDirs(t *testing.T) {
	root, pkgDirs := sourceDirs(t)
	dirs := []struct{ what, name string }{
		{"default results root (pipelines.DefaultOutputDir)", pipelines.DefaultOutputDir},
		{"default pipelines directory (defaultPipelinesDir)", defaultPipelinesDir},
	}
	// The examples' output.dir, as run from the repository root.
	examples, _ := filepath.Glob("../../examples/*.yaml")
	for _, f := range examples {
		p, err := pipelines.Load(f, func(string) (string, bool) { return "", false })
		if err != nil {
			t.Fatal(err)
		}
		dirs = append(dirs, struct{ what, name string }{"output.dir of " + filepath.Base(f), p.Output.Dir})
	}
	for _, d := range dirs {
		if !filepath.IsLocal(d.name) {
			t.Errorf("%s %q is not a relative path inside the working directory", d.what, d.name)
			continue
		}
		dir := filepath.Join(root, d.name)
		for _, p := range pkgDirs {
			switch {
			case within(p, dir):
				t.Errorf("%s ./%s holds the sources of package %s", d.what, d.name, p)
			case p != root && within(dir, p):
				t.Errorf("%s ./%s is inside the sources of package %s", d.what, d.name, p)
			}
		}
		// A directory of that name left by a run must hold no Go file.
		_ = filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
			if err == nil && strings.HasSuffix(path, ".go") {
				t.Errorf("%s is a Go file inside the %s", path, d.what)
				return filepath.SkipAll
			}
			return nil
		})
	}
}

// TestFlagHelpNamesTheDefaults keeps the help strings that spell the
// defaults out (worker.go cannot import them without a conflict-prone
// import) in line with the constants.
func TestFlagHelpNamesTheDefaults(t *testing.T) {
	root := newRootCmd(&bytes.Buffer{}, &bytes.Buffer{})
	for _, c := range []struct{ cmd, flag, want string }{
		{"run", "results", "./" + pipelines.DefaultOutputDir},
		{"worker", "results", "./" + pipelines.DefaultOutputDir},
		{"scheduler", "pipelines", "./" + defaultPipelinesDir},
		{"schedule ls", "pipelines", "./" + defaultPipelinesDir},
	} {
		cmd, _, err := root.Find(strings.Fields(c.cmd))
		if err != nil {
			t.Fatal(err)
		}
		if f := cmd.Flags().Lookup(c.flag); f == nil || !strings.Contains(f.Usage, c.want) {
			t.Errorf("threadmill %s --%s: usage %q does not name the default %s", c.cmd, c.flag, f.Usage, c.want)
		}
	}
}

// TestQuickStartRunWritesOnlyItsResults runs the README's quick start
// (`threadmill run --simulate examples/weekly-support-brief.yaml`) from a
// directory laid out like the repository root (every package directory of
// the module, empty), and checks that it printed and wrote only
// ./threadmill-results/<pipeline>/...: nothing inside a source directory,
// nothing else in the working directory.
func TestQuickStartRunWritesOnlyItsResults(t *testing.T) {
	unsetRunnerEnv(t)
	work := t.TempDir()
	example, err := os.ReadFile("../../examples/weekly-support-brief.yaml")
	if err != nil {
		t.Fatal(err)
	}
	root, pkgDirs := sourceDirs(t)
	var srcDirs []string // in work
	for _, p := range pkgDirs {
		rel, err := filepath.Rel(root, p)
		if err != nil || rel == "." {
			continue
		}
		srcDirs = append(srcDirs, filepath.Join(work, rel))
		if err := os.MkdirAll(filepath.Join(work, rel), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(work, "examples", "weekly-support-brief.yaml"), example, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(work)

	code, stdout, stderr := runnerCLI(t.Context(), "run", "--simulate", "--progress", "none", "examples/weekly-support-brief.yaml")
	if code != exitOK {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	want := "results: " + filepath.Join(pipelines.DefaultOutputDir, "weekly-support-brief") + string(filepath.Separator)
	if !strings.Contains(stdout, want) {
		t.Errorf("stdout does not say %q:\n%s", want, stdout)
	}
	var written []string
	err = filepath.WalkDir(work, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(work, path)
		rel = filepath.ToSlash(rel)
		switch {
		case e.IsDir() || rel == "examples/weekly-support-brief.yaml":
		case slices.ContainsFunc(srcDirs, func(d string) bool { return within(path, d) }):
			t.Errorf("the run wrote %s, inside a source directory", rel)
		case within(path, filepath.Join(work, pipelines.DefaultOutputDir)):
			written = append(written, rel)
		default:
			t.Errorf("the run wrote %s, outside ./%s", rel, pipelines.DefaultOutputDir)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(written) < 4 {
		t.Errorf("the run wrote %v under ./%s, want its run directory", written, pipelines.DefaultOutputDir)
	}
}
