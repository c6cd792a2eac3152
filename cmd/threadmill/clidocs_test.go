package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestCLIDocsListEveryCommand keeps docs/cli.md in line with the command
// tree: every command is listed, and nothing listed is missing.
func TestCLIDocsListEveryCommand(t *testing.T) {
	doc, err := os.ReadFile("../../docs/cli.md")
	if err != nil {
		t.Fatal(err)
	}
	root := newRootCmd(&bytes.Buffer{}, &bytes.Buffer{})
	root.InitDefaultCompletionCmd()
	seen := map[string]bool{}
	for _, c := range root.Commands() {
		if c.Hidden || c.Name() == "help" {
			continue
		}
		seen[c.Name()] = true
		if !strings.Contains(string(doc), "| `threadmill "+c.Name()) {
			t.Errorf("docs/cli.md does not list `threadmill %s`", c.Name())
		}
	}
	for _, line := range strings.Split(string(doc), "\n") {
		rest, ok := strings.CutPrefix(line, "| `threadmill ")
		if !ok {
			continue
		}
		name, _, _ := strings.Cut(rest, " ")
		name = strings.TrimSuffix(name, "`")
		if !seen[name] {
			t.Errorf("docs/cli.md lists `threadmill %s`, which does not exist", name)
		}
	}
}

// TestCompletionScripts checks the documented completion commands print
// scripts, and that bash accepts the bash one.
func TestCompletionScripts(t *testing.T) {
	for _, shell := range []string{"bash", "zsh", "fish", "powershell"} {
		var out, errOut bytes.Buffer
		if code := execute(context.Background(), []string{"completion", shell}, &out, &errOut); code != exitOK || out.Len() < 500 {
			t.Fatalf("completion %s: exit %d, %d bytes, stderr %s", shell, code, out.Len(), errOut.String())
		}
		if !strings.Contains(out.String(), "threadmill") {
			t.Errorf("completion %s does not mention threadmill", shell)
		}
		if shell == "bash" {
			cmd := exec.Command("bash", "-n")
			cmd.Stdin = &out
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("bash -n on the bash completion script: %v\n%s", err, b)
			}
		}
	}
	// The completion engine itself: subcommands of threadmill.
	var out bytes.Buffer
	if code := execute(context.Background(), []string{"__complete", "wor"}, &out, &bytes.Buffer{}); code != exitOK || !strings.Contains(out.String(), "worker") {
		t.Errorf("__complete wor: exit %d, %q", code, out.String())
	}
}
