package deploy_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/threadmill/threadmill/deploy"
)

// TestBuildContextRules checks the walk against Docker's documented
// .dockerignore behaviour on a small tree: anchored patterns, `**`,
// directories, and `!` re-including files inside an excluded directory.
func TestBuildContextRules(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{
		"go.mod", "README.md", "README-secret.md", "CHANGES.md",
		"results/writer.go", "results/testdata/a.json", "results/run1/report.md",
		"cmd/results/main.go", "a/testdata/fuzz/F/x", "a/a.go",
		"out/keep.txt", "out/drop.txt", ".git/HEAD",
	} {
		p := filepath.Join(dir, filepath.FromSlash(f))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ignore := "# comment\n.git\n/results/\n!results/*.go\n!/results/testdata\n**/testdata/fuzz/\n*.md\n!README*.md\nREADME-secret.md\nout\n!out/keep.txt\n"
	if err := os.WriteFile(filepath.Join(dir, ".dockerignore"), []byte(ignore), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := deploy.BuildContext(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{".dockerignore", "README.md", "a/a.go", "cmd/results/main.go", "go.mod", "out/keep.txt", "results/testdata/a.json", "results/writer.go"}
	if !slices.Equal(got, want) {
		t.Errorf("context = %v\nwant      %v", got, want)
	}

	dst := t.TempDir()
	if err := deploy.CopyFiles(dir, dst, got); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dst, "results", "writer.go")); err != nil || string(b) != "results/writer.go" {
		t.Errorf("copied results/writer.go: %q, %v", b, err)
	}
}

func TestParseDockerfile(t *testing.T) {
	df, err := deploy.ParseDockerfile(strings.NewReader(`# syntax=docker/dockerfile:1
ARG GO_VERSION=1.26
FROM golang:${GO_VERSION} AS build
COPY go.mod go.sum ./
COPY --chown=1:1 . .
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod \
    CGO_ENABLED=0 go build -trimpath -tags timetzdata \
      -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/bin/x ./cmd/x \
 && cp examples/*.yaml /out/etc/ ; cp /etc/passwd /out/
FROM scratch
COPY --from=build /out/ /
`))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(df.Copies, []string{"go.mod", "go.sum", "."}) {
		t.Errorf("Copies = %q", df.Copies)
	}
	if !slices.Equal(df.ContextCopies, []string{"examples/*.yaml"}) {
		t.Errorf("ContextCopies = %q", df.ContextCopies)
	}
	want := []string{"-trimpath", "-tags", "timetzdata", "-ldflags", "-s -w -X main.version=dev", "-o", "/out/bin/x", "./cmd/x"}
	if len(df.GoBuilds) != 1 || !slices.Equal(df.GoBuilds[0], want) {
		t.Errorf("GoBuilds = %q, want [%q]", df.GoBuilds, want)
	}
}

// TestDockerBuildContextBuilds lays out exactly the build context `docker
// build .` would send (the repository less .dockerignore, applied with
// Docker's own matcher) in a temporary directory, checks every COPY and cp
// of the Dockerfile finds its sources there, and runs the Dockerfile's
// `go build` commands in it, offline, from the local module cache. So no
// ignore rule can drop a package, or a file the image copies, unnoticed.
// (No Docker engine is needed: none runs on the machines this was written
// on.)
func TestDockerBuildContextBuilds(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary from a copy of the build context")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command")
	}
	files, err := deploy.BuildContext("..")
	if err != nil {
		t.Fatal(err)
	}
	ctxDir := t.TempDir()
	if err := deploy.CopyFiles("..", ctxDir, files); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(dockerfile)
	if err != nil {
		t.Fatal(err)
	}
	df, err := deploy.ParseDockerfile(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(df.GoBuilds) == 0 {
		t.Fatal("the Dockerfile runs no `go build`")
	}
	for _, src := range append(slices.Clone(df.Copies), df.ContextCopies...) {
		m, err := filepath.Glob(filepath.Join(ctxDir, filepath.FromSlash(src)))
		if err != nil || len(m) == 0 {
			t.Errorf("the Dockerfile copies %s, which is not in the build context (.dockerignore drops it?)", src)
		}
	}

	// The modules the build needs must be in the module cache: `go list`
	// in the repository fetches any that are missing (through the
	// machine's GOPROXY; a no-op when `go test ./...` already has).
	for _, args := range df.GoBuilds {
		list := exec.Command(goBin, append([]string{"list", "-deps", "-tags", "timetzdata"}, packages(args)...)...)
		list.Dir = ".."
		if b, err := list.CombinedOutput(); err != nil {
			t.Fatalf("go list -deps %v in the repository: %v\n%s", packages(args), err, b)
		}
	}
	modcache, err := exec.Command(goBin, "env", "GOMODCACHE").Output()
	if err != nil {
		t.Fatalf("go env GOMODCACHE: %v", err)
	}
	env := append(os.Environ(),
		"GOMODCACHE="+strings.TrimSpace(string(modcache)),
		"GOPROXY=off",           // the module cache only, no network
		"GOFLAGS=-mod=readonly", // what plain `go build` does in the image
		"GOWORK=off",
		"GOTOOLCHAIN=local",
		"CGO_ENABLED=0",
	)
	outDir := t.TempDir()
	for i, args := range df.GoBuilds {
		args = slices.Clone(args)
		out := filepath.Join(outDir, "bin"+string(rune('0'+i)))
		if j := slices.Index(args, "-o"); j >= 0 && j+1 < len(args) {
			args[j+1] = out
		} else {
			args = append([]string{"-o", out}, args...)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		cmd := exec.CommandContext(ctx, goBin, append([]string{"build"}, args...)...)
		cmd.Dir, cmd.Env = ctxDir, env
		b, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("go build %s in the build context: %v\n%s\n(context: %d files; is a needed directory in .dockerignore?)",
				strings.Join(args, " "), err, b, len(files))
		}
		// The Dockerfile runs `threadmill version` after the build.
		if b, err := exec.Command(out, "version").CombinedOutput(); err != nil || !strings.Contains(string(b), "dev") {
			t.Errorf("%s version: %v: %s", out, err, b)
		}
	}
}

// packages returns the package arguments of a `go build` command line.
func packages(args []string) []string {
	var pkgs []string
	for _, a := range args {
		if strings.HasPrefix(a, "./") || a == "." {
			pkgs = append(pkgs, a)
		}
	}
	return pkgs
}
