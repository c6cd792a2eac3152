package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// docShellCommand is one threadmill invocation found in a shell block of
// the docs.
type docShellCommand struct {
	where string   // file:line
	args  []string // the arguments after the threadmill binary
}

// shellWords splits one shell line into words, honouring single and double
// quotes and backslash escapes. Operators (&&, ||, |, ;, >, >>, <) end a word
// and are returned as words of their own; a # at the start of a word starts
// a comment. It is enough for the docs' examples, not a shell.
func shellWords(line string) []string {
	var words []string
	var cur strings.Builder
	inWord := false
	flush := func() {
		if inWord {
			words = append(words, cur.String())
			cur.Reset()
			inWord = false
		}
	}
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == '\'':
			j := strings.IndexByte(line[i+1:], '\'')
			if j < 0 {
				j = len(line) - i - 1
			}
			cur.WriteString(line[i+1 : i+1+j])
			inWord = true
			i += j + 1
		case c == '"':
			i++
			for ; i < len(line) && line[i] != '"'; i++ {
				if line[i] == '\\' && i+1 < len(line) {
					i++
				}
				cur.WriteByte(line[i])
			}
			inWord = true
		case c == '\\' && i+1 < len(line):
			i++
			cur.WriteByte(line[i])
			inWord = true
		case c == ' ' || c == '\t':
			flush()
		case c == '#' && !inWord:
			flush()
			return words
		case strings.IndexByte("&|;<>", c) >= 0:
			flush()
			op := string(c)
			if i+1 < len(line) && (line[i+1] == c || (c == '>' && line[i+1] == '>')) {
				op += string(line[i+1])
				i++
			}
			words = append(words, op)
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	flush()
	return words
}

// threadmillArgs returns the arguments of a threadmill invocation in one
// simple command (words up to an operator), in the forms the docs use:
// threadmill ARGS, go run ./cmd/threadmill ARGS, docker compose run ... cli
// ARGS, docker run ... threadmill:TAG ARGS.
func threadmillArgs(words []string) ([]string, bool) {
	at := func(i int, w ...string) bool {
		if i+len(w) > len(words) {
			return false
		}
		for k, x := range w {
			if words[i+k] != x {
				return false
			}
		}
		return true
	}
	switch {
	case at(0, "threadmill"):
		return words[1:], true
	case at(0, "go", "run", "./cmd/threadmill"):
		return words[3:], true
	case at(0, "docker", "compose", "run"):
		for i := 3; i < len(words); i++ {
			if words[i] == "cli" {
				return words[i+1:], true
			}
		}
	case at(0, "docker", "run"):
		for i := 2; i < len(words); i++ {
			if strings.HasPrefix(words[i], "threadmill:") {
				return words[i+1:], true
			}
		}
	}
	return nil, false
}

// docCommands returns the threadmill invocations of the ```sh, ```bash and
// ```shell blocks of a Markdown file.
func docCommands(name, doc string) []docShellCommand {
	var out []docShellCommand
	fence := false
	lines := strings.Split(doc, "\n")
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		switch {
		case !fence && (l == "```sh" || l == "```bash" || l == "```shell"):
			fence = true
			continue
		case fence && l == "```":
			fence = false
			continue
		case !fence:
			continue
		}
		start := i + 1
		for strings.HasSuffix(l, "\\") && i+1 < len(lines) { // continuation lines
			i++
			l = strings.TrimSuffix(l, "\\") + " " + lines[i]
		}
		words := shellWords(l)
		for len(words) > 0 {
			end := len(words)
			for k, w := range words {
				if strings.IndexByte("&|;<>", w[0]) >= 0 && len(w) <= 2 {
					end = k
					break
				}
			}
			if args, ok := threadmillArgs(words[:end]); ok {
				out = append(out, docShellCommand{where: name + ":" + strconv.Itoa(start), args: args})
			}
			if end == len(words) {
				break
			}
			// After an operator comes the next command, or a redirection's
			// target, which never reads as a threadmill invocation.
			words = words[end+1:]
		}
	}
	return out
}

func TestShellWords(t *testing.T) {
	got := shellWords(`threadmill completion zsh > "${fpath[1]}/_threadmill" && echo 'a b' x\ y # note`)
	want := []string{"threadmill", "completion", "zsh", ">", "${fpath[1]}/_threadmill", "&&", "echo", "a b", "x y"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("shellWords = %q, want %q", got, want)
	}
	cmds := docCommands("x.md", "```sh\nthreadmill status RUN   # one run\ndocker compose run --rm cli enqueue f.yaml | tee out\n"+
		"docker run --rm -e A=b threadmill:local worker \\\n  --metrics-addr :9090\nasynq stats\n```\nthreadmill not-in-a-block\n")
	var seen []string
	for _, c := range cmds {
		seen = append(seen, c.where+" "+strings.Join(c.args, " "))
	}
	if want := "x.md:2 status RUN|x.md:3 enqueue f.yaml|x.md:4 worker --metrics-addr :9090"; strings.Join(seen, "|") != want {
		t.Errorf("docCommands = %q, want %q", seen, want)
	}
}

// TestDocsCommandsParse checks that every threadmill command in a shell
// block of README.md and docs/ names a real subcommand with flags it
// accepts and the right number of arguments, so a renamed flag cannot leave
// the docs wrong.
func TestDocsCommandsParse(t *testing.T) {
	files, err := filepath.Glob("../../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, "../../README.md")
	var cmds []docShellCommand
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, docCommands(strings.TrimPrefix(f, "../../"), string(b))...)
	}
	if len(cmds) < 8 {
		t.Fatalf("found %d threadmill commands in the docs' shell blocks; the extraction is broken", len(cmds))
	}
	for _, c := range cmds {
		root := newRootCmd(&bytes.Buffer{}, &bytes.Buffer{})
		root.InitDefaultCompletionCmd()
		cmd, rest, err := root.Find(c.args)
		if err != nil || cmd == root {
			t.Errorf("%s: threadmill %s: not a threadmill command (%v)", c.where, strings.Join(c.args, " "), err)
			continue
		}
		if err := cmd.ParseFlags(rest); err != nil {
			t.Errorf("%s: threadmill %s: %v", c.where, strings.Join(c.args, " "), err)
			continue
		}
		if err := cmd.ValidateArgs(cmd.Flags().Args()); err != nil {
			t.Errorf("%s: threadmill %s: %v", c.where, strings.Join(c.args, " "), err)
		}
	}
	t.Logf("%d commands checked", len(cmds))
}
