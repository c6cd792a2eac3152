package jobs

import (
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"strconv"
	"strings"
)

// Task ids.
//
// A task id is a list of parts joined by ':', each part made of
// [A-Za-z0-9._-] only, so that the whole id is one path segment of
// asynqmon's routes (/queues/{q}/tasks/{id}) and one shell word for the asynq
// CLI, whatever the run id or the item key holds:
//
//	<run>:start
//	<run>:item:<step>[:<artifact>]     the item key, its "/" written ':'
//	<run>:advance:<step>
//	<run>:finalize
//
// A retry of a run (RunStart.Attempt n > 0) puts "r<n>" right after the run:
// "<run>:r2:item:summarize:artifact_1". The second part is thus either the
// attempt or the kind, and the layout after the kind is fixed by the kind,
// so two different payloads never get the same id.
//
// A part is the text itself when it is 1 to 64 bytes of [A-Za-z0-9._-], does
// not start with '-' and does not end like a hashed part. Anything else (a
// scheduled run id's '@', ':' and '+', spaces, unicode, a long key) is
// written as a readable rendering, at most 48 bytes, then '.' and the first
// 16 hex digits of the SHA-256 of the original text:
//
//	weekly-brief@2026-03-30T09:00:00+02:00  →  weekly-brief-2026-03-30T09-00-00-02-00.<16 hex>
//
// Ids are deterministic (the dedupe of enqueues relies on it); a hashed part
// cannot equal a plain one, and two hashed parts are equal only when their
// texts are, bar a 64-bit hash collision.

// Task id layout limits.
const (
	maxPlainPart  = 64 // longest part kept as it is
	maxHashedText = 48 // longest readable rendering before a hash
	partHashHex   = 16 // hex digits of the hash of a hashed part
)

var (
	plainPartRe  = regexp.MustCompile(`^[A-Za-z0-9_.][A-Za-z0-9_.-]*$`)
	hashedPartRe = regexp.MustCompile(`\.[0-9a-f]{16}$`)
	unsafeRunRe  = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)
)

// TaskIDRe matches every task id this package makes.
var TaskIDRe = regexp.MustCompile(`^[A-Za-z0-9._:-]+$`)

// idPart writes s as one part of a task id (see the comment above).
func idPart(s string) string {
	if s == "" || (len(s) <= maxPlainPart && plainPartRe.MatchString(s) && !hashedPartRe.MatchString(s)) {
		return s
	}
	return hashedPart(s)
}

// hashedPart is the readable rendering of s followed by '.' and its hash.
func hashedPart(s string) string {
	text := unsafeRunRe.ReplaceAllString(s, "-")
	if len(text) > maxHashedText {
		text = text[:maxHashedText]
	}
	text = strings.Trim(text, "-.")
	if text == "" {
		text = "x"
	}
	sum := sha256.Sum256([]byte(s))
	return text + "." + hex.EncodeToString(sum[:])[:partHashHex]
}

// runPrefix is the start of every task id of a run's attempt: the run, then
// "r<n>" for a retry.
func runPrefix(run string, attempt int) string {
	if attempt <= 0 {
		return idPart(run)
	}
	return idPart(run) + ":r" + strconv.Itoa(attempt)
}

// itemParts writes an item key (normally "<step>" or "<step>/<artifact>",
// see pipelines.ItemKey) as task id parts, the step once.
func itemParts(step, key string) string {
	if key == step {
		return idPart(step)
	}
	rest, ok := strings.CutPrefix(key, step+"/")
	if !ok {
		// Not a key pipelines.ItemKey makes: one hashed part, whose hash
		// input (with a '/') differs from any segment of a step-prefixed
		// key's (without).
		return idPart(step) + ":" + hashedPart("/"+key)
	}
	parts := strings.Split(rest, "/")
	var b strings.Builder
	b.WriteString(idPart(step))
	for _, p := range parts {
		b.WriteByte(':')
		b.WriteString(idPart(p))
	}
	return b.String()
}
