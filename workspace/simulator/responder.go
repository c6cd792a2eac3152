package simulator

import (
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/threadmill/threadmill/workspace"
)

// source is one document the responder reads.
type source struct {
	id      string
	name    string
	content string
	sents   []sentence // the content's sentences; computed when nil
}

// sentence is a candidate sentence and its distinct keyword stems.
type sentence struct {
	text  string
	stems []string
}

// analyze splits text into sentences with their stems.
func analyze(text string) []sentence {
	ss := sentences(text)
	out := make([]sentence, len(ss))
	for i, s := range ss {
		seen := map[string]bool{}
		var stems []string
		for _, w := range words(s) {
			if w = stem(w); !seen[w] {
				seen[w] = true
				stems = append(stems, w)
			}
		}
		out[i] = sentence{text: s, stems: stems}
	}
	return out
}

// answer is the responder's output for one request.
type answer struct {
	text       string
	stopReason string
	usage      workspace.Usage
	// thinking is the thinking block's text (thinking.enabled), billed
	// as output; sources and citations answer system.citations.
	thinking  string
	sources   []byte
	citations []workspace.Citation
}

// respond is the deterministic responder. Same request, same sources: same
// answer, byte for byte. The algorithm:
//
//  1. The question is the text of the last user message. Its instruction is
//     its first paragraph up to the first blank line or list item (lines
//     joined); what follows is its context (e.g. the summaries a reduce step
//     pastes in). The keywords are the instruction's lower-cased words of
//     three letters or more, minus a short stop-word list, stemmed crudely:
//     the suffixes -ing, -ed, -es and -s stripped, then cut to six letters.
//  2. The candidate sentences come from the referenced artifacts in the
//     order given, then from the question's context. Without artifacts
//     (one-shot chat, or an interaction with none) they come from the earlier
//     messages and the question's context; if the question is a single block
//     its first sentence is the instruction and the rest is the context. If
//     nothing is left the answer is "Simulated answer to: " and the question.
//     Markdown markers are stripped; headings, code blocks, table rows,
//     "Label: value" lines without final punctuation and sentences of fewer
//     than four words are dropped.
//  3. Each sentence scores the number of distinct keywords it contains; the
//     best are taken by score, ties broken by position. When there are both
//     artifact sentences and context sentences, the answer alternates
//     between the two (context first), best first in each.
//  4. The answer is one "- " bullet per chosen sentence, in score order; an
//     artifact sentence is followed by " [artifact name]" when several
//     artifacts were referenced. There are as many bullets as the question
//     asks for ("three bullets", "5 points"), else five (ten for
//     ProjectDeepResearch).
//  5. Bullets are added while the answer's token estimate stays within
//     max_tokens (default 1024); the first bullet that does not fit is cut at
//     a word boundary and stop_reason is "max_tokens". Otherwise stop_reason
//     is "end_turn".
//
// Usage uses workspace.EstimateTokens (one token per four bytes, rounded up):
// input_tokens is the estimate of the system text plus the text of every
// message text block plus the content of every referenced artifact, each
// estimated separately and summed (earlier turns of a thread are not
// re-billed); output_tokens is the estimate of the answer text. temperature,
// top_p and seed do not change the answer.
func respond(req workspace.ChatRequest, sources []source, agent string) answer {
	var in int64
	if req.System != nil {
		in += workspace.EstimateTokens(req.System.Text)
	}
	texts := make([]string, len(req.Messages))
	last := -1
	for i, m := range req.Messages {
		var parts []string
		for _, b := range m.Content {
			if b.Type == "text" {
				in += workspace.EstimateTokens(b.Text)
				parts = append(parts, b.Text)
			}
		}
		texts[i] = strings.Join(parts, "\n")
		if m.Role == workspace.RoleUser {
			last = i
		}
	}
	for _, s := range sources {
		in += workspace.EstimateTokens(s.content)
	}
	var question string
	if last >= 0 {
		question = texts[last]
	}

	limit := DefaultMaxTokens
	if req.MaxTokens != nil {
		limit = *req.MaxTokens
	}
	want := 5
	if agent == workspace.AgentProjectDeepResearch {
		want = 10
	}
	if n := requestedCount(question); n > 0 {
		want = n
	}
	instruction, context := splitQuestion(question, len(sources) == 0)
	keywords := keywordSet(instruction)

	type cand struct {
		text  string
		stems []string
		from  string
		score int
		pos   int
	}
	var cands []cand
	for _, src := range sources {
		sents := src.sents
		if sents == nil {
			sents = analyze(src.content)
		}
		for _, sen := range sents {
			cands = append(cands, cand{text: sen.text, stems: sen.stems, from: src.name, pos: len(cands)})
		}
	}
	if len(sources) == 0 {
		for i, t := range texts {
			if i == last {
				continue
			}
			for _, sen := range sentences(t) {
				cands = append(cands, cand{text: sen, pos: len(cands)})
			}
		}
	}
	for _, sen := range sentences(context) {
		cands = append(cands, cand{text: sen, pos: len(cands)})
	}
	if len(cands) == 0 {
		cands = append(cands, cand{text: "Simulated answer to: " + strings.Join(strings.Fields(question), " ")})
	}
	for i := range cands {
		if cands[i].stems != nil {
			for _, w := range cands[i].stems {
				if keywords[w] {
					cands[i].score++
				}
			}
		} else {
			cands[i].score = overlap(keywords, cands[i].text)
		}
	}
	slices.SortStableFunc(cands, func(a, b cand) int {
		if a.score != b.score {
			return b.score - a.score
		}
		return a.pos - b.pos
	})
	// Two pools (artifact sentences and the question's own material) are
	// interleaved, the question's first, so that both show in the answer.
	var fromArt, fromText []cand
	for _, c := range cands {
		if c.from != "" {
			fromArt = append(fromArt, c)
		} else {
			fromText = append(fromText, c)
		}
	}
	cands = cands[:0]
	for i := 0; len(cands) < want && (i < len(fromArt) || i < len(fromText)); i++ {
		if i < len(fromText) {
			cands = append(cands, fromText[i])
		}
		if i < len(fromArt) && len(cands) < want {
			cands = append(cands, fromArt[i])
		}
	}

	var b strings.Builder
	stop := workspace.StopReasonEndTurn
	for i, c := range cands {
		line := "- " + c.text
		if len(sources) > 1 && c.from != "" {
			line += " [" + c.from + "]"
		}
		if i > 0 {
			line = "\n" + line
		}
		if workspace.EstimateTokens(b.String()+line) <= int64(limit) {
			b.WriteString(line)
			continue
		}
		stop = workspace.StopReasonMaxTokens
		// Cut at the last word boundary that fits.
		words := strings.SplitAfter(line, " ")
		for _, w := range words {
			if workspace.EstimateTokens(b.String()+w) > int64(limit) {
				break
			}
			b.WriteString(w)
		}
		break
	}
	// A copy of its own: the builder's buffer has room to spare, and the
	// answer is kept as long as its interaction.
	text := strings.Clone(strings.TrimRight(b.String(), " "))
	return answer{
		text:       text,
		stopReason: stop,
		usage: workspace.Usage{
			InputTokens:  workspace.Count(in),
			OutputTokens: workspace.Count(workspace.EstimateTokens(text)),
		},
	}
}

var stopWords = map[string]bool{
	"the": true, "and": true, "for": true, "are": true, "but": true, "not": true,
	"you": true, "your": true, "all": true, "any": true, "can": true, "has": true,
	"have": true, "was": true, "were": true, "this": true, "that": true, "these": true,
	"those": true, "with": true, "from": true, "into": true, "about": true, "what": true,
	"which": true, "who": true, "how": true, "why": true, "when": true, "where": true,
	"will": true, "would": true, "should": true, "could": true, "its": true, "our": true,
	"their": true, "them": true, "they": true, "then": true, "than": true, "there": true,
	"please": true, "give": true, "list": true, "write": true, "summarize": true,
	"summarise": true, "summary": true, "bullets": true, "bullet": true, "points": true,
	"sentences": true, "one": true, "two": true, "three": true, "four": true, "five": true,
	"six": true, "seven": true, "eight": true, "nine": true, "ten": true, "each": true,
	"only": true, "use": true, "using": true, "answer": true, "english": true, "max": true,
}

func words(s string) []string {
	return strings.FieldsFunc(strings.ToLower(s), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r)
	})
}

func keywordSet(s string) map[string]bool {
	set := map[string]bool{}
	for _, w := range words(s) {
		if len(w) >= 3 && !stopWords[w] {
			set[stem(w)] = true
		}
	}
	return set
}

// stem strips a few English suffixes and keeps at most six letters, so
// that "fixed", "fixes" and "fix", or "escalated" and "escalation", match:
// crude, but deterministic.
func stem(w string) string {
	for _, suf := range []string{"ing", "ed", "es", "s"} {
		if len(w) > len(suf)+2 && strings.HasSuffix(w, suf) {
			w = w[:len(w)-len(suf)]
			break
		}
	}
	n := 0
	for i := range w {
		if n == 6 {
			return w[:i]
		}
		n++
	}
	return w
}

func overlap(keywords map[string]bool, s string) int {
	seen := map[string]bool{}
	n := 0
	for _, w := range words(s) {
		w = stem(w)
		if keywords[w] && !seen[w] {
			seen[w] = true
			n++
		}
	}
	return n
}

var countRe = regexp.MustCompile(`(?i)\b(\d{1,2}|one|two|three|four|five|six|seven|eight|nine|ten)\s+(?:short\s+|key\s+|main\s+)?(bullets?|points?|sentences?|items?|lines?)\b`)

var numberWords = map[string]int{
	"one": 1, "two": 2, "three": 3, "four": 4, "five": 5,
	"six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10,
}

// requestedCount returns the number of bullets the question asks for, or 0.
func requestedCount(q string) int {
	m := countRe.FindStringSubmatch(q)
	if m == nil {
		return 0
	}
	if n, ok := numberWords[strings.ToLower(m[1])]; ok {
		return n
	}
	n, _ := strconv.Atoi(m[1])
	if n < 1 || n > 50 {
		return 0
	}
	return n
}

var (
	labelLineRe  = regexp.MustCompile(`^[\pL][\pL\pN ./()-]{0,30}:\s`)
	listMarkerRe = regexp.MustCompile(`^(?:[-*+]\s+|\d+[.)]\s+|>\s*)+`)
	sentenceEnd  = regexp.MustCompile(`[.!?]["')\]]?\s+`)
	inlineMarkup = strings.NewReplacer("**", "", "__", "", "`", "")
)

// sentences splits markdown or plain text into sentences: headings, code
// blocks, table rows, rules and "Label: value" metadata lines are dropped,
// list markers and emphasis are stripped, and sentences of fewer than four
// words are dropped.
func sentences(text string) []string { return splitSentences(text, 4) }

// splitSentences is sentences with a minimum number of words.
func splitSentences(text string, minWords int) []string {
	var out []string
	inFence := false
	for line := range strings.Lines(text) {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "```") || strings.HasPrefix(line, "~~~") {
			inFence = !inFence
			continue
		}
		if inFence || line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "|") ||
			strings.HasPrefix(line, "---") || strings.HasPrefix(line, "===") {
			continue
		}
		line = listMarkerRe.ReplaceAllString(line, "")
		line = inlineMarkup.Replace(line)
		if labelLineRe.MatchString(line) && !strings.ContainsAny(line[len(line)-1:], ".!?") {
			continue // a "Label: value" metadata line, not prose
		}
		start := 0
		for _, loc := range sentenceEnd.FindAllStringIndex(line, -1) {
			out = appendSentence(out, line[start:loc[1]], minWords)
			start = loc[1]
		}
		out = appendSentence(out, line[start:], minWords)
	}
	return out
}

func appendSentence(out []string, s string, minWords int) []string {
	s = strings.TrimSpace(s)
	if len(strings.Fields(s)) < minWords {
		return out
	}
	return append(out, s)
}

// splitQuestion separates the instruction of a question from its context:
// the instruction is the first paragraph up to a blank line or a list item,
// lines joined with spaces. When the question is one block and split is
// true, its first sentence is the instruction and the rest is the context.
func splitQuestion(q string, split bool) (instruction, context string) {
	lines := strings.Split(q, "\n")
	var head []string
	i := 0
	for ; i < len(lines); i++ {
		l := strings.TrimSpace(lines[i])
		if l == "" {
			if len(head) == 0 {
				continue
			}
			break
		}
		if len(head) > 0 && listMarkerRe.MatchString(l) {
			break
		}
		head = append(head, l)
	}
	instruction = strings.Join(head, " ")
	context = strings.Join(lines[i:], "\n")
	if strings.TrimSpace(context) == "" && split {
		if loc := sentenceEnd.FindStringIndex(instruction); loc != nil {
			return strings.TrimSpace(instruction[:loc[1]]), instruction[loc[1]:]
		}
	}
	return instruction, context
}
