package deploy

import (
	"bufio"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

// BuildContext lists the files, slash-separated and relative to dir, that
// `docker build dir` sends as its build context: the tree less what
// dir/.dockerignore excludes, read with Docker's own ignore-file reader and
// matched with Docker's own matcher (github.com/moby/patternmatcher).
//
// The walk follows BuildKit's: a file is kept unless the last pattern that
// matches it (or one of its parent directories) is an exclusion; `!`
// re-includes a path inside an excluded directory; an excluded directory is
// only descended into when a `!` pattern could re-include something inside
// it (one that names a path below it, or has a wildcard). Symbolic links
// are listed as files.
func BuildContext(dir string) ([]string, error) {
	patterns, err := readDockerignore(filepath.Join(dir, ".dockerignore"))
	if err != nil {
		return nil, err
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, ".dockerignore"), err)
	}
	var reincludes []string // the `!` patterns
	wildReinclude := false
	for _, p := range pm.Patterns() {
		if p.Exclusion() {
			reincludes = append(reincludes, p.String())
			wildReinclude = wildReinclude || strings.ContainsAny(p.String(), `*?[\`)
		}
	}
	// The parents' match results, by directory, as BuildKit keeps them.
	info := map[string]patternmatcher.MatchInfo{}
	var files []string
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		rel = filepath.ToSlash(rel)
		excluded, mi, err := pm.MatchesUsingParentResults(rel, info[path.Dir(rel)])
		if err != nil {
			return fmt.Errorf("matching %s: %w", rel, err)
		}
		if d.IsDir() {
			info[rel] = mi
			if excluded && !wildReinclude && !slices.ContainsFunc(reincludes, func(r string) bool {
				return strings.HasPrefix(r, rel+"/")
			}) {
				return filepath.SkipDir
			}
			return nil
		}
		if !excluded {
			files = append(files, rel)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return files, nil
}

// readDockerignore reads an ignore file as Docker does; a missing file
// excludes nothing.
func readDockerignore(name string) ([]string, error) {
	f, err := os.Open(name)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	patterns, err := ignorefile.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return patterns, nil
}

// CopyFiles copies files (slash-separated, relative to src) to dst,
// creating their directories, and keeps each file's mode.
func CopyFiles(src, dst string, files []string) error {
	for _, f := range files {
		from, to := filepath.Join(src, filepath.FromSlash(f)), filepath.Join(dst, filepath.FromSlash(f))
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			return err
		}
		if err := copyFile(from, to); err != nil {
			return err
		}
	}
	return nil
}

func copyFile(from, to string) error {
	st, err := os.Lstat(from)
	if err != nil {
		return err
	}
	if st.Mode()&fs.ModeSymlink != 0 {
		target, err := os.Readlink(from)
		if err != nil {
			return err
		}
		return os.Symlink(target, to)
	}
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, st.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copying %s: %w", from, err)
	}
	return out.Close()
}

// Dockerfile is what the build-context test needs from a Dockerfile: the
// files its build stages copy from the context and the `go build` commands
// its RUN instructions run, with ARG defaults substituted.
type Dockerfile struct {
	// Copies are the sources of every COPY or ADD from the build context
	// (not --from another stage), as written: paths or globs.
	Copies []string
	// ContextCopies are the sources of `cp` commands in RUN instructions
	// that read the build context (relative paths), as written.
	ContextCopies []string
	// GoBuilds are the argument lists after `go build` of every RUN.
	GoBuilds [][]string
}

var (
	instrRe = regexp.MustCompile(`(?i)^(FROM|ARG|COPY|ADD|RUN)\s+(.*)$`)
	argRe   = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)`)
)

// ParseDockerfile reads the instructions of a Dockerfile that the
// build-context test replays. It is not a full parser: it joins continued
// lines, skips comments, splits RUN commands at && and ; and words at
// blanks (double and single quotes group), and substitutes ARG defaults.
func ParseDockerfile(r io.Reader) (*Dockerfile, error) {
	var lines []string
	var cur strings.Builder
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") || (trimmed == "" && cur.Len() == 0) {
			continue
		}
		if body, ok := strings.CutSuffix(strings.TrimRight(line, " \t"), `\`); ok {
			cur.WriteString(body + " ")
			continue
		}
		cur.WriteString(line)
		lines = append(lines, strings.TrimSpace(cur.String()))
		cur.Reset()
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	df := &Dockerfile{}
	args := map[string]string{}
	subst := func(s string) string {
		return argRe.ReplaceAllStringFunc(s, func(m string) string {
			sub := argRe.FindStringSubmatch(m)
			return args[sub[1]+sub[2]]
		})
	}
	for _, line := range lines {
		m := instrRe.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		instr, rest := strings.ToUpper(m[1]), m[2]
		switch instr {
		case "ARG":
			name, def, _ := strings.Cut(rest, "=")
			args[strings.TrimSpace(name)] = strings.Trim(strings.TrimSpace(def), `"`)
		case "COPY", "ADD":
			words := shellWords(rest)
			var srcs []string
			fromStage := false
			for _, w := range words {
				if strings.HasPrefix(w, "--") {
					fromStage = fromStage || strings.HasPrefix(w, "--from=")
					continue
				}
				srcs = append(srcs, subst(w))
			}
			if !fromStage && len(srcs) >= 2 {
				df.Copies = append(df.Copies, srcs[:len(srcs)-1]...)
			}
		case "RUN":
			for _, cmd := range splitCommands(rest) {
				words := shellWords(cmd)
				for len(words) > 0 && strings.HasPrefix(words[0], "--mount=") {
					words = words[1:]
				}
				for len(words) > 0 && strings.Contains(words[0], "=") && !strings.HasPrefix(words[0], "-") {
					words = words[1:] // VAR=value before the command
				}
				for i := range words {
					words[i] = subst(words[i])
				}
				switch {
				case len(words) >= 2 && words[0] == "go" && words[1] == "build":
					df.GoBuilds = append(df.GoBuilds, words[2:])
				case len(words) >= 3 && words[0] == "cp":
					for _, w := range words[1 : len(words)-1] {
						if !strings.HasPrefix(w, "-") && !strings.HasPrefix(w, "/") {
							df.ContextCopies = append(df.ContextCopies, w)
						}
					}
				}
			}
		}
	}
	return df, nil
}

// splitCommands splits a shell command line at && and ; outside quotes.
func splitCommands(s string) []string {
	var out []string
	var cur strings.Builder
	quote := rune(0)
	rs := []rune(s)
	for i := 0; i < len(rs); i++ {
		r := rs[i]
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			}
		case r == '"' || r == '\'':
			quote = r
		case r == ';', r == '&' && i+1 < len(rs) && rs[i+1] == '&':
			if r == '&' {
				i++
			}
			out = append(out, strings.TrimSpace(cur.String()))
			cur.Reset()
			continue
		}
		cur.WriteRune(r)
	}
	return append(out, strings.TrimSpace(cur.String()))
}

// shellWords splits s at blanks; quotes group and are removed.
func shellWords(s string) []string {
	var out []string
	var cur strings.Builder
	quote, inWord := rune(0), false
	for _, r := range s {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case r == '"' || r == '\'':
			quote, inWord = r, true
		case r == ' ' || r == '\t':
			if inWord {
				out = append(out, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		out = append(out, cur.String())
	}
	return out
}
