package main

import (
	"fmt"
	"io"

	"github.com/threadmill/threadmill/results"
)

// printDelivery prints what a finished run reused and where it published
// its report, from its run.json.
func printDelivery(w io.Writer, r *results.Run) {
	if r.Reused > 0 {
		fmt.Fprintf(w, "reused: %s took an earlier run's output (%d tokens saved); --no-reuse sends them\n", plural(r.Reused, "item"), r.TokensSaved)
	}
	if p := r.Published; p != nil {
		if p.Error != "" {
			fmt.Fprintf(w, "publish: %q was not published: %s\n", p.Name, p.Error)
		} else {
			fmt.Fprintf(w, "published: %q (artifact %s, %s)\n", p.Name, p.ArtifactID, p.Action)
		}
	}
}
