// Package numfmt formats numbers for people: the reports, plans and progress
// lines threadmill prints.
package numfmt

import (
	"strconv"
	"strings"
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
