package progress_test

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/threadmill/threadmill/internal/progress"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

func TestLines(t *testing.T) {
	var out bytes.Buffer
	c := &clock{t: time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)}
	r := progress.New(&out, progress.Options{Interval: 5 * time.Second, Now: c.now})

	r.Update(progress.Snapshot{Phase: "planning"})
	c.advance(5 * time.Second)
	r.Update(progress.Snapshot{Total: 200, Step: "summarize"})
	c.advance(time.Second)
	r.Update(progress.Snapshot{Total: 200, Done: 10, Tokens: 1200, Step: "summarize"}) // within the interval: silent
	c.advance(4 * time.Second)
	r.Update(progress.Snapshot{Total: 200, Done: 50, Failed: 2, Tokens: 45210, Step: "summarize"})
	c.advance(5 * time.Second)
	r.Update(progress.Snapshot{Total: 201, Done: 100, Failed: 2, Skipped: 1, Tokens: 90000, Step: "brief"})
	c.advance(5 * time.Second)
	r.Update(progress.Snapshot{Total: 201, Done: 201, Failed: 2, Skipped: 1, Tokens: 181234, Phase: "finalizing"})
	c.advance(5 * time.Second)
	r.Finish(progress.Snapshot{Total: 201, Done: 201, Failed: 2, Skipped: 1, Tokens: 181234})

	want := strings.Join([]string{
		"progress: planning, 0/0 items, 0 failed, 0 tokens",
		"progress: step summarize, 0/200 items (0%), 0 failed, 0 tokens",
		"progress: step summarize, 50/200 items (25%), 2 failed, 45,210 tokens, 5.0 items/s, ETA 30s",
		"progress: step brief, 100/201 items (49%), 2 failed, 1 skipped, 90,000 tokens, 6.7 items/s, ETA 15s",
		"progress: finalizing, 201/201 items (100%), 2 failed, 1 skipped, 181,234 tokens, 10.1 items/s",
		"progress: 201/201 items (100%), 2 failed, 1 skipped, 181,234 tokens, 8.0 items/s overall",
		"",
	}, "\n")
	if out.String() != want {
		t.Fatalf("got:\n%s\nwant:\n%s", out.String(), want)
	}
}

// The rate follows the last 30 seconds, not the whole run: after a slow
// start, a fast phase shows its own speed.
func TestLinesRateWindow(t *testing.T) {
	var out bytes.Buffer
	c := &clock{t: time.Unix(0, 0)}
	r := progress.New(&out, progress.Options{Interval: time.Second, Now: c.now, Label: "run"})
	done := 0
	for range 60 { // 1 item/s for a minute
		done++
		c.advance(time.Second)
		r.Update(progress.Snapshot{Total: 10000, Done: done})
	}
	for range 40 { // then 100 items/s
		done += 100
		c.advance(time.Second)
		r.Update(progress.Snapshot{Total: 10000, Done: done})
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	last := lines[len(lines)-1]
	if !strings.HasPrefix(last, "run: ") || !strings.Contains(last, ", 100 items/s, ETA 59s") {
		t.Fatalf("last line %q, want the 30s window's rate of 100 items/s and ETA 59s", last)
	}
}

func TestAutoIsLinesOffTerminal(t *testing.T) {
	var out bytes.Buffer
	r := progress.New(&out, progress.Options{})
	r.Update(progress.Snapshot{Total: 3, Done: 1})
	if got := out.String(); !strings.HasPrefix(got, "progress: 1/3 items") || strings.Contains(got, "\r") {
		t.Fatalf("auto mode on a buffer wrote %q", got)
	}
	f, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if progress.IsTerminal(f) || progress.IsTerminal(&out) {
		t.Fatal("a file or a buffer taken for a terminal")
	}
}

func TestBar(t *testing.T) {
	var out bytes.Buffer
	r := progress.New(&out, progress.Options{Mode: progress.Bar})
	r.Update(progress.Snapshot{Total: 200, Done: 0, Step: "summarize"})
	r.Finish(progress.Snapshot{Total: 200, Done: 200, Failed: 3, Tokens: 45210})
	got := out.String()
	for _, want := range []string{"200/200", "3 failed", "45,210 tokens", "items/s", "100%"} {
		if !strings.Contains(got, want) {
			t.Errorf("bar output lacks %q:\n%q", want, got)
		}
	}
}

func TestQuiet(t *testing.T) {
	var out bytes.Buffer
	r := progress.New(&out, progress.Options{Mode: progress.Quiet})
	r.Update(progress.Snapshot{Total: 1})
	r.Finish(progress.Snapshot{Total: 1, Done: 1})
	if out.Len() != 0 {
		t.Fatalf("quiet wrote %q", out.String())
	}
}

func ExampleNew() {
	start := time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)
	now := start
	r := progress.New(os.Stdout, progress.Options{Mode: progress.Lines, Now: func() time.Time { return now }})
	r.Update(progress.Snapshot{Total: 100, Done: 0})
	now = now.Add(10 * time.Second)
	r.Update(progress.Snapshot{Total: 100, Done: 40, Failed: 1, Tokens: 12000})
	now = now.Add(15 * time.Second)
	r.Finish(progress.Snapshot{Total: 100, Done: 100, Failed: 1, Tokens: 30500})
	// Output:
	// progress: 0/100 items (0%), 0 failed, 0 tokens
	// progress: 40/100 items (40%), 1 failed, 12,000 tokens, 4.0 items/s, ETA 15s
	// progress: 100/100 items (100%), 1 failed, 30,500 tokens, 4.0 items/s overall
}
