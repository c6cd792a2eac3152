package results

import (
	"bufio"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/threadmill/threadmill/internal/numfmt"
	"github.com/threadmill/threadmill/workspace"
)

// renderReport writes report.md: a header with the run's facts, the report
// step's text (body, streamed from the file AppendReport wrote, when not nil,
// then the text given to Commit), a usage table per step, and the first
// failures.
func renderReport(b *bufio.Writer, run *Run, body io.Reader, report string, failures []Item, failed int) error {
	fmt.Fprintf(b, "# %s\n\n", run.Pipeline)
	fmt.Fprintf(b, "- Run: `%s`\n", run.RunID)
	fmt.Fprintf(b, "- Status: **%s**: %s\n", run.Status, countsLine(run))
	if run.FireTime != nil {
		fmt.Fprintf(b, "- Scheduled for: %s\n", run.FireTime.UTC().Format(time.RFC3339))
	}
	if run.WindowStart != nil && run.WindowEnd != nil {
		fmt.Fprintf(b, "- Window: %s to %s\n", run.WindowStart.UTC().Format(time.RFC3339), run.WindowEnd.UTC().Format(time.RFC3339))
	}
	if !run.StartedAt.IsZero() {
		fmt.Fprintf(b, "- Started: %s", run.StartedAt.UTC().Format(time.RFC3339))
		if d := run.Duration(); d > 0 {
			fmt.Fprintf(b, ", took %s", roundDuration(d))
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(b, "- Tokens: %s (%s in, %s out)", numfmt.Thousands(run.Usage.Total()),
		numfmt.Thousands(int64(run.Usage.InputTokens)), numfmt.Thousands(int64(run.Usage.OutputTokens)))
	if run.Retries > 0 {
		fmt.Fprintf(b, ", %s retries", numfmt.Thousands(int64(run.Retries)))
	}
	if run.Reused > 0 {
		fmt.Fprintf(b, "\n- Reused: %s items took an earlier run's output, %s tokens saved",
			numfmt.Thousands(int64(run.Reused)), numfmt.Thousands(run.TokensSaved))
	}
	b.WriteString("\n\n")

	title := "Report"
	if run.ReportStep != "" {
		title = "Report (step `" + run.ReportStep + "`)"
	}
	fmt.Fprintf(b, "## %s\n\n", title)
	text := strings.TrimSpace(report)
	if body != nil {
		if _, err := io.Copy(b, body); err != nil {
			return err
		}
		if text != "" {
			b.WriteString("\n\n")
		}
	}
	switch {
	case text != "":
		b.WriteString(text)
		b.WriteString("\n\n")
	case body != nil:
		b.WriteString("\n\n")
	default:
		b.WriteString("_The report step produced no output; see errors.jsonl._\n\n")
	}

	b.WriteString("## Usage\n\n")
	// The canceled column appears only in the report of a canceled run.
	states := []string{StateSucceeded, StateFailed, StateSkipped}
	if run.Counts[StateCanceled] > 0 {
		states = append(states, StateCanceled)
	}
	b.WriteString("| step | items |")
	for _, st := range states {
		b.WriteString(" " + st + " |")
	}
	b.WriteString(" input tokens | output tokens | total tokens |\n| --- | ---: |")
	b.WriteString(strings.Repeat(" ---: |", len(states)))
	b.WriteString(" ---: | ---: | ---: |\n")
	row := func(name string, items map[string]int, total int, u workspace.Usage) {
		fmt.Fprintf(b, "| %s | %s |", name, numfmt.Thousands(int64(total)))
		for _, st := range states {
			fmt.Fprintf(b, " %s |", numfmt.Thousands(int64(items[st])))
		}
		fmt.Fprintf(b, " %s | %s | %s |\n", numfmt.Thousands(int64(u.InputTokens)), numfmt.Thousands(int64(u.OutputTokens)), numfmt.Thousands(u.Total()))
	}
	for _, s := range run.Steps {
		n := 0
		for _, st := range states {
			n += s.Items[st]
		}
		row(cell(s.Step), s.Items, n, s.Usage)
	}
	row("**total**", run.Counts, run.Total, run.Usage)

	if failed > 0 {
		b.WriteString("\n## Failures\n\n")
		if failed > len(failures) {
			fmt.Fprintf(b, "The first %d of %d failed items; errors.jsonl has all of them.\n\n", len(failures), failed)
		}
		for _, f := range failures {
			what := "`" + f.Key + "`"
			if f.Artifact != nil && f.Artifact.Name != "" {
				what += " (" + f.Artifact.Name + ")"
			}
			msg := strings.Join(strings.Fields(f.Error), " ")
			if msg == "" {
				msg = "no error message recorded"
			}
			fmt.Fprintf(b, "- step `%s`, item %s, %d attempt(s): %s\n", f.Step, what, f.Attempts, msg)
		}
	}
	return nil
}

func countsLine(run *Run) string {
	parts := []string{fmt.Sprintf("%s items", numfmt.Thousands(int64(run.Total)))}
	for _, st := range []string{StateSucceeded, StateFailed, StateSkipped, StateCanceled} {
		if n := run.Counts[st]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s %s", numfmt.Thousands(int64(n)), st))
		}
	}
	return strings.Join(parts, ", ")
}

// cell escapes a value for a Markdown table cell.
func cell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

func roundDuration(d time.Duration) time.Duration {
	switch {
	case d >= time.Minute:
		return d.Round(time.Second)
	case d >= time.Second:
		return d.Round(10 * time.Millisecond)
	default:
		return d.Round(time.Millisecond)
	}
}
