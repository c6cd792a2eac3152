// Package numfmt formats numbers for people: the reports, plans and progress
// lines threadmill prints, and durations and times for the same readers.
package numfmt

import (
	"strconv"
	"strings"
	"time"
)

// Thousands formats n in decimal with a comma between groups of three
// digits: 12,345 and -1,000.
func Thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	sign, digits := "", s
	if n < 0 {
		sign, digits = "-", s[1:]
	}
	var b strings.Builder
	b.WriteString(sign)
	for i, c := range digits {
		if i > 0 && (len(digits)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// Duration formats d for a person: "-" when not positive, tenths of a
// second under a minute ("4.2s"), whole seconds above ("3m", "1h2m5s").
func Duration(d time.Duration) string {
	switch {
	case d <= 0:
		return "-"
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	default:
		s := d.Round(time.Second).String()
		if strings.HasSuffix(s, "m0s") {
			s = strings.TrimSuffix(s, "0s")
		}
		return s
	}
}

// Stamp formats t in UTC to the second ("2026-12-02 09:00:00Z"); "-" for
// the zero time.
func Stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}
