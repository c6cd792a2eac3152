package docgen_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDocsLinks checks every relative link of README.md and docs/*.md: the
// file exists and, for #anchor links, a heading has that anchor.
func TestDocsLinks(t *testing.T) {
	files, err := filepath.Glob("../../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, "../../README.md")
	link := regexp.MustCompile(`\]\(([^)\s]+)\)`)
	for _, f := range files {
		text, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range link.FindAllStringSubmatch(stripCode(string(text)), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			path, anchor, _ := strings.Cut(target, "#")
			dest := f
			if path != "" {
				dest = filepath.Join(filepath.Dir(f), path)
			}
			b, err := os.ReadFile(dest)
			if err != nil {
				if _, serr := os.Stat(dest); serr == nil {
					continue // a directory
				}
				t.Errorf("%s: link %s: %v", filepath.Base(f), target, err)
				continue
			}
			if anchor != "" && strings.HasSuffix(dest, ".md") && !hasAnchor(string(b), anchor) {
				t.Errorf("%s: link %s: no heading with that anchor in %s", filepath.Base(f), target, filepath.Base(dest))
			}
		}
	}
}

// stripCode drops fenced code blocks, whose brackets are not links.
func stripCode(s string) string {
	var b strings.Builder
	fence := false
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, "```") {
			fence = !fence
			continue
		}
		if !fence {
			b.WriteString(l)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

func hasAnchor(doc, anchor string) bool {
	for _, l := range strings.Split(stripCode(doc), "\n") {
		if !strings.HasPrefix(l, "#") {
			continue
		}
		h := strings.TrimSpace(strings.TrimLeft(l, "#"))
		var b strings.Builder
		for _, r := range strings.ToLower(h) {
			switch {
			case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_':
				b.WriteRune(r)
			case r == ' ':
				b.WriteByte('-')
			}
		}
		if b.String() == anchor {
			return true
		}
	}
	return false
}
