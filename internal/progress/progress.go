// Package progress shows a run's progress: a progress bar on a terminal
// (items done/total, failed, tokens, rate, ETA) and plain periodic lines
// otherwise, so logs of non-interactive runs stay readable.
//
// A Reporter has no goroutine of its own: the caller polls the run state and
// passes each Snapshot to Update, and calls Finish once at the end.
package progress

import (
	"cmp"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/schollz/progressbar/v3"

	"github.com/threadmill/threadmill/internal/numfmt"
)

// Snapshot is the progress of a run at one moment.
type Snapshot struct {
	// Total is the number of items planned so far (it grows when a later step
	// is planned); Done counts finished items in any state.
	Total, Done int
	// Failed and Skipped are the finished items that did not succeed.
	Failed, Skipped int
	// Tokens is the usage so far (input plus output).
	Tokens int64
	// Step names the step in progress, when known.
	Step string
	// Phase, when set, is shown instead of Step: "planning", "finalizing".
	Phase string
}

// Reporter shows progress.
type Reporter interface {
	// Update shows s if it is time to (a bar redraws at most every 100ms,
	// lines are printed every Options.Interval).
	Update(s Snapshot)
	// Finish shows the final state.
	Finish(s Snapshot)
}

// Mode selects the kind of Reporter.
type Mode int

// Modes of New.
const (
	Auto  Mode = iota // a bar when the writer is a terminal, lines otherwise
	Bar               // always a bar
	Lines             // always plain lines
	Quiet             // nothing
)

// Options configure New.
type Options struct {
	// Mode is Auto by default.
	Mode Mode
	// Interval is the time between plain lines; default 5s.
	Interval time.Duration
	// Now is the clock; default time.Now. Tests set it.
	Now func() time.Time
	// Label prefixes plain lines; default "progress".
	Label string
}

// New returns a Reporter writing to w.
func New(w io.Writer, opts Options) Reporter {
	opts.Interval = cmp.Or(opts.Interval, 5*time.Second)
	if opts.Now == nil {
		opts.Now = time.Now
	}
	opts.Label = cmp.Or(opts.Label, "progress")
	mode := opts.Mode
	if mode == Auto {
		mode = Lines
		if IsTerminal(w) {
			mode = Bar
		}
	}
	switch mode {
	case Quiet:
		return quiet{}
	case Bar:
		return newBar(w)
	default:
		return &lines{w: w, opts: opts, rate: rate{window: 30 * time.Second}}
	}
}

// IsTerminal reports whether w is a terminal that can redraw a bar (not a
// file, a pipe, or a terminal with TERM=dumb).
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || os.Getenv("TERM") == "dumb" {
		return false
	}
	return isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd())
}

type quiet struct{}

func (quiet) Update(Snapshot) {}
func (quiet) Finish(Snapshot) {}

// lines prints one line per Interval, and one when the run finishes.
type lines struct {
	w    io.Writer
	opts Options

	mu      sync.Mutex
	last    time.Time
	printed bool
	rate    rate
}

func (l *lines) Update(s Snapshot) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.opts.Now()
	l.rate.add(now, s.Done)
	if l.printed && now.Sub(l.last) < l.opts.Interval {
		return
	}
	l.printed, l.last = true, now
	fmt.Fprintln(l.w, l.line(s, now, false))
}

func (l *lines) Finish(s Snapshot) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.opts.Now()
	l.rate.add(now, s.Done)
	fmt.Fprintln(l.w, l.line(s, now, true))
}

// line formats: "progress: 120/200 items (60%), 2 failed, 45,210 tokens, 12.3 items/s, ETA 7s".
func (l *lines) line(s Snapshot, now time.Time, final bool) string {
	var b strings.Builder
	b.WriteString(l.opts.Label)
	b.WriteString(": ")
	switch {
	case final:
	case s.Phase != "":
		fmt.Fprintf(&b, "%s, ", s.Phase)
	case s.Step != "":
		fmt.Fprintf(&b, "step %s, ", s.Step)
	}
	fmt.Fprintf(&b, "%s/%s items", numfmt.Thousands(int64(s.Done)), numfmt.Thousands(int64(s.Total)))
	if s.Total > 0 {
		fmt.Fprintf(&b, " (%d%%)", s.Done*100/s.Total)
	}
	fmt.Fprintf(&b, ", %s failed", numfmt.Thousands(int64(s.Failed)))
	if s.Skipped > 0 {
		fmt.Fprintf(&b, ", %s skipped", numfmt.Thousands(int64(s.Skipped)))
	}
	fmt.Fprintf(&b, ", %s tokens", numfmt.Thousands(s.Tokens))
	if final {
		if r := l.rate.overall(); r > 0 {
			fmt.Fprintf(&b, ", %s items/s overall", formatRate(r))
		}
		return b.String()
	}
	if r := l.rate.perSecond(); r > 0 {
		fmt.Fprintf(&b, ", %s items/s", formatRate(r))
		if left := s.Total - s.Done; left > 0 {
			fmt.Fprintf(&b, ", ETA %s", formatETA(time.Duration(float64(left)/r*float64(time.Second))))
		}
	}
	return b.String()
}

// rate estimates items per second over a sliding window of samples.
type rate struct {
	window  time.Duration
	samples []sample
	first   sample
	hasAny  bool
}

type sample struct {
	at   time.Time
	done int
}

func (r *rate) add(at time.Time, done int) {
	if !r.hasAny {
		r.first, r.hasAny = sample{at, done}, true
	}
	r.samples = append(r.samples, sample{at, done})
	// Keep one sample older than the window as the baseline.
	i := 0
	for i+1 < len(r.samples) && at.Sub(r.samples[i+1].at) >= r.window {
		i++
	}
	r.samples = r.samples[i:]
}

func (r *rate) perSecond() float64 {
	if len(r.samples) < 2 {
		return 0
	}
	a, b := r.samples[0], r.samples[len(r.samples)-1]
	d := b.at.Sub(a.at).Seconds()
	if d <= 0 || b.done <= a.done {
		return 0
	}
	return float64(b.done-a.done) / d
}

func (r *rate) overall() float64 {
	if len(r.samples) == 0 {
		return 0
	}
	b := r.samples[len(r.samples)-1]
	d := b.at.Sub(r.first.at).Seconds()
	if d <= 0 || b.done <= r.first.done {
		return 0
	}
	return float64(b.done-r.first.done) / d
}

// bar draws a schollz/progressbar bar; its description carries the failed
// count and the tokens.
type bar struct {
	mu    sync.Mutex
	w     io.Writer
	b     *progressbar.ProgressBar
	total int
}

func newBar(w io.Writer) *bar {
	pb := progressbar.NewOptions64(-1,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription("planning"),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString("items"),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionSetWidth(24),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSetRenderBlankState(true),
		progressbar.OptionShowElapsedTimeOnFinish(),
	)
	return &bar{w: w, b: pb, total: -1}
}

func (b *bar) Update(s Snapshot) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.set(s)
}

func (b *bar) Finish(s Snapshot) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.set(s)
	if s.Total > 0 && s.Done >= s.Total {
		_ = b.b.Finish() // draws the full bar, bypassing the throttle
	} else {
		_ = b.b.Exit() // keeps the bar as it stands (an interrupted run)
	}
	fmt.Fprintln(b.w) // what follows starts on a line of its own
}

func (b *bar) set(s Snapshot) {
	if s.Total != b.total && s.Total > 0 {
		b.total = s.Total
		b.b.ChangeMax64(int64(s.Total))
	}
	b.b.Describe(describe(s))
	_ = b.b.Set64(int64(s.Done))
}

func describe(s Snapshot) string {
	var parts []string
	if s.Phase != "" {
		parts = append(parts, s.Phase)
	} else if s.Step != "" {
		parts = append(parts, s.Step)
	}
	parts = append(parts, numfmt.Thousands(int64(s.Failed))+" failed")
	if s.Skipped > 0 {
		parts = append(parts, numfmt.Thousands(int64(s.Skipped))+" skipped")
	}
	parts = append(parts, numfmt.Thousands(s.Tokens)+" tokens")
	return strings.Join(parts, " · ")
}

func formatRate(r float64) string {
	if r >= 100 {
		return strconv.FormatFloat(r, 'f', 0, 64)
	}
	return strconv.FormatFloat(r, 'f', 1, 64)
}

func formatETA(d time.Duration) string {
	switch {
	case d < time.Second:
		return "<1s"
	case d < time.Hour:
		return d.Round(time.Second).String()
	default:
		return d.Round(time.Minute).String()
	}
}
