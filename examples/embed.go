// Package examples holds threadmill's example pipelines and the small
// artifact corpus (examples/artifacts) that the Workspace simulator serves.
// The corpus is embedded in the binary, so `threadmill simulate` and
// `--simulate` work from any directory.
package examples

import (
	"embed"
	"io/fs"
)

//go:embed artifacts
var embedded embed.FS

// Artifacts is the corpus, rooted at examples/artifacts: its top-level
// entries are the folders Support, Meetings, Policies, Product and
// Onboarding. Seed a simulator with it:
//
//	sim.AddDir(examples.Artifacts, ".")
var Artifacts fs.FS = mustSub(embedded, "artifacts")

func mustSub(fsys fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(fsys, dir)
	if err != nil {
		panic(err) // unreachable: dir is a valid path embedded above
	}
	return sub
}
