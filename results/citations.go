package results

import (
	"fmt"
	"strings"

	"github.com/threadmill/threadmill/workspace"
)

// Footnotes turns the citations of the report's items into Markdown
// footnotes naming the cited artifacts, so a reader can trace each part of
// the report to its documents. Learn every item of the run (in any order)
// to know the artifacts' names; Cite each report item when its text is
// written; Notes gives the footnote definitions at the end.
//
// A footnote is one cited artifact (and page): "[^2]: TCK-1041-login-loop.md,
// page 1 (artifact art_1)". Its name is the name of the run's for_each
// artifact with that id, else the title its source gave, else the id. The
// Workspace documents no position for a citation in the text, so an item's
// markers follow its text, on a "Sources:" line, in citation order.
type Footnotes struct {
	names  map[string]string // artifact id -> name, from the run's items
	titles map[string]string // artifact id -> title, from sources
	keys   []noteKey         // footnotes in number order
	index  map[noteKey]int   // footnote -> number (1-based)
}

type noteKey struct {
	artifact, title string
	page            int64
}

// NewFootnotes returns an empty Footnotes.
func NewFootnotes() *Footnotes {
	return &Footnotes{names: map[string]string{}, titles: map[string]string{}, index: map[noteKey]int{}}
}

// Learn records the artifact names an item knows: its for_each artifact
// and the titles of its sources.
func (f *Footnotes) Learn(it Item) {
	if a := it.Artifact; a != nil && a.ID != "" && a.Name != "" {
		f.names[a.ID] = a.Name
	}
	for _, s := range it.Sources {
		if s.ArtifactID != "" && s.Title != "" && f.titles[s.ArtifactID] == "" {
			f.titles[s.ArtifactID] = s.Title
		}
	}
}

// Cite numbers the citations of an item and returns the line of markers
// to put after its text ("" when it cites nothing). A citation is matched
// with its source (source_id) for its page; a source block without
// citations cites each of its sources.
func (f *Footnotes) Cite(it Item) string {
	byID := map[string]workspace.Source{}
	for _, s := range it.Sources {
		if s.ID != "" {
			byID[s.ID] = s
		}
	}
	var keys []noteKey
	for _, c := range it.Citations {
		src := byID[c.SourceID]
		k := noteKey{artifact: c.ArtifactID, page: src.Page}
		if k.artifact == "" {
			k.artifact, k.title = src.ArtifactID, src.Title
			if k.artifact == "" && k.title == "" {
				k.title = src.URL
			}
		}
		if k.artifact != "" || k.title != "" {
			keys = append(keys, k)
		}
	}
	if len(it.Citations) == 0 {
		for _, s := range it.Sources {
			k := noteKey{artifact: s.ArtifactID, page: s.Page}
			if k.artifact == "" {
				k.title = cmpOr(s.Title, s.URL)
			}
			if k.artifact != "" || k.title != "" {
				keys = append(keys, k)
			}
		}
	}
	var marks []string
	seen := map[int]bool{}
	for _, k := range keys {
		n, ok := f.index[k]
		if !ok {
			f.keys = append(f.keys, k)
			n = len(f.keys)
			f.index[k] = n
		}
		if !seen[n] {
			seen[n] = true
			marks = append(marks, fmt.Sprintf("[^%d]", n))
		}
	}
	if len(marks) == 0 {
		return ""
	}
	return "Sources: " + strings.Join(marks, " ")
}

// Notes returns the footnote definitions, one per line, in number order.
func (f *Footnotes) Notes() string {
	var b strings.Builder
	for i, k := range f.keys {
		name := cmpOr(f.names[k.artifact], f.titles[k.artifact], k.title, k.artifact)
		fmt.Fprintf(&b, "[^%d]: %s", i+1, name)
		if k.page > 0 {
			fmt.Fprintf(&b, ", page %d", k.page)
		}
		if k.artifact != "" && name != k.artifact {
			fmt.Fprintf(&b, " (artifact `%s`)", k.artifact)
		}
		b.WriteString("\n")
	}
	return b.String()
}

func cmpOr(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}
