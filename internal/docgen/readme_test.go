package docgen_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// shellBlock is a fenced shell block of a Markdown file.
type shellBlock struct {
	line int
	text string
	skip bool // preceded by <!-- test: skip -->
}

// quickStartBlocks returns the ```sh blocks of the section whose heading
// starts with "## Quick start".
func quickStartBlocks(doc string) []shellBlock {
	var out []shellBlock
	lines := strings.Split(doc, "\n")
	in, fence, skipNext := false, false, false
	var cur strings.Builder
	start := 0
	for i, l := range lines {
		switch {
		case strings.HasPrefix(l, "## "):
			in = strings.HasPrefix(l, "## Quick start")
		case !in:
		case !fence && strings.TrimSpace(l) == "<!-- test: skip -->":
			skipNext = true
		case !fence && (l == "```sh" || l == "```bash" || l == "```shell"):
			fence, start = true, i+1
			cur.Reset()
		case fence && l == "```":
			fence = false
			out = append(out, shellBlock{line: start, text: cur.String(), skip: skipNext})
			skipNext = false
		case fence:
			cur.WriteString(l)
			cur.WriteByte('\n')
		}
	}
	return out
}

// TestReadmeQuickStart runs, as written, the shell blocks of the README's
// quick start that work offline (all but the CI entry point, which runs this
// test, and blocks marked <!-- test: skip -->), from the repository root,
// so the README cannot rot.
func TestReadmeQuickStart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs the README's commands")
	}
	for _, tool := range []string{"bash", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the README's quick start needs %s: %v", tool, err)
		}
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks := quickStartBlocks(string(doc))
	ran := 0
	for _, b := range blocks {
		if b.skip || strings.Contains(b.text, ".ci/run") {
			continue
		}
		ran++
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		cmd := exec.CommandContext(ctx, "bash", "-e", "-o", "pipefail", "-c", b.text)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "WORKSPACE_API_TOKEN=") // the simulator must not require a token here
		cmd.WaitDelay = 10 * time.Second
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			t.Errorf("README.md:%d: the quick-start block failed: %v\n%s\n--- output:\n%s", b.line, err, b.text, out)
			continue
		}
		t.Logf("README.md:%d ran:\n%s", b.line, out)
		if strings.Contains(b.text, "/api/v1/app/chat") && !strings.Contains(string(out), `"role":"assistant"`) {
			t.Errorf("README.md:%d: the chat call printed no assistant answer:\n%s", b.line, out)
		}
		if strings.Contains(b.text, "threadmill run") {
			checkRunResults(t, root, b.line, string(out))
		}
	}
	if ran == 0 {
		t.Fatalf("README.md has no runnable shell block under ## Quick start (found %d blocks)", len(blocks))
	}
}

func TestQuickStartBlocks(t *testing.T) {
	doc := "# x\n```sh\nno\n```\n## Quick start (offline)\ntext\n```sh\necho one\n```\n<!-- test: skip -->\n```bash\necho two\n```\n```go\nx\n```\n## Next\n```sh\nno\n```\n"
	got := quickStartBlocks(doc)
	if len(got) != 2 || got[0].text != "echo one\n" || got[0].skip || got[1].text != "echo two\n" || !got[1].skip || got[0].line != 7 {
		t.Errorf("quickStartBlocks = %+v", got)
	}
}

// checkRunResults asserts that a README block that runs a pipeline printed
// its run directory and that the directory holds the promised files.
func checkRunResults(t *testing.T, root string, line int, out string) {
	t.Helper()
	var dir string
	for _, l := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(l, "results: "); ok {
			dir = strings.TrimSpace(rest)
		}
	}
	if dir == "" {
		t.Errorf("README.md:%d: the run printed no \"results: DIR\" line:\n%s", line, out)
		return
	}
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(root, dir)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	for _, name := range []string{"report.md", "results.jsonl", "errors.jsonl", "run.json"} {
		if fi, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("README.md:%d: the run's %s: %v", line, name, err)
		} else if name != "errors.jsonl" && fi.Size() == 0 {
			t.Errorf("README.md:%d: the run's %s is empty", line, name)
		}
	}
}
