package pipelines

import (
	"cmp"
	"fmt"
	"path"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/robfig/cron/v3"
	"go.yaml.in/yaml/v3"

	"github.com/threadmill/threadmill/workspace"
)

// Ranges the checks enforce.
const (
	maxMaxTokens     = 200_000
	maxConcurrency   = 10_000
	maxRPM           = 1_000_000
	maxTPM           = 1_000_000_000
	maxAttemptsLimit = 100
	maxItemTimeout   = 24 * time.Hour
	// minItemTimeout is asynq's resolution: it keeps a task's timeout in
	// whole seconds, and a shorter one would be no timeout at all.
	minItemTimeout  = time.Second
	maxCatchupLimit = 1000
	maxTemperature  = 2.0
	maxNameLen      = 100
)

var (
	identRe    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	setNameRe  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*$`)
	fileNameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
	dateRe     = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}$`)
)

// Agents are the interaction agent presets the API accepts.
var Agents = []string{workspace.AgentDefault, workspace.AgentProjectDeepResearch}

// ArtifactTypes are the artifact types a set may select (every type of the
// API but Folder: folders are walked, never used as context).
var ArtifactTypes = []string{"InlineText", "Document", "Summary", "Composition", "SmartDoc", "Link",
	"BulkQA", "ReadAndExtract", "SqlDatabase", "McpServer", "Analysis", "Skill"}

// cronParser accepts 5-field expressions and descriptors (@daily, @every 1h).
var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// ParseCron parses a schedule's cron expression: 5 fields or a descriptor
// (@hourly, @daily, @weekly, @monthly, @yearly, or @every with a whole
// number of seconds, at least 1s).
func ParseCron(expr string) (cron.Schedule, error) {
	expr = strings.TrimSpace(expr)
	if strings.HasPrefix(expr, "TZ=") || strings.HasPrefix(expr, "CRON_TZ=") {
		return nil, fmt.Errorf("put the time zone in schedule.timezone, not in the cron expression")
	}
	if d, ok := strings.CutPrefix(expr, "@every "); ok {
		every, err := time.ParseDuration(strings.TrimSpace(d))
		if err != nil || every < time.Second || every%time.Second != 0 {
			return nil, fmt.Errorf("@every needs a whole number of seconds, at least 1s (such as @every 30m)")
		}
	}
	s, err := cronParser.Parse(expr)
	if err == nil {
		return s, nil
	}
	// Say robfig/cron's two least readable errors in the file's terms.
	msg := err.Error()
	if rest, ok := strings.CutPrefix(msg, "failed to parse int from "); ok {
		word, _, _ := strings.Cut(rest, ":")
		return nil, fmt.Errorf("%q is neither a number nor a name (days are SUN to SAT, months JAN to DEC)", word)
	}
	if d, ok := strings.CutPrefix(msg, "unrecognized descriptor: "); ok {
		if sg := suggest(d, cronDescriptors); sg != "" {
			return nil, fmt.Errorf("unknown descriptor %s; did you mean %s?", d, sg)
		}
		return nil, fmt.Errorf("unknown descriptor %s", d)
	}
	return nil, err
}

// cronDescriptors are the descriptors ParseCron accepts besides @every.
var cronDescriptors = []string{"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}

// checker checks a decoded pipeline for meaning, before defaults apply.
type checker struct {
	p    *Pipeline
	d    *decoder
	e    *errs
	src  []string // the file's lines, to place template errors
	root pos      // the document's position
}

// at returns the position of a path's value, or of its closest parent.
func (c *checker) at(path string) pos {
	for path != "" {
		if p, ok := c.d.pos[path]; ok {
			return p
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return c.root
}

// keyAt returns the position of a path's key, else of its value.
func (c *checker) keyAt(path string) pos {
	if p, ok := c.d.keyPos[path]; ok {
		return p
	}
	return c.at(path)
}

func (c *checker) has(path string) bool { _, ok := c.d.pos[path]; return ok }

// absent reports whether a required key is missing, and not merely
// misspelled (the misspelling has its own message).
func (c *checker) absent(path string) bool { return !c.has(path) && !c.d.typo[path] }

// isBad reports whether path or a parent of it failed to decode.
func (c *checker) isBad(path string) bool {
	for path != "" {
		if c.d.bad[path] {
			return true
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			return false
		}
		path = path[:i]
	}
	return false
}

// add reports a problem with the value at path, unless that value already
// failed to decode (and was reported).
func (c *checker) add(path, format string, args ...any) {
	if c.isBad(path) {
		return
	}
	c.e.add(c.at(path), "%s: %s", path, fmt.Sprintf(format, args...))
}

// oneOf checks an enum value, suggesting a near miss.
func (c *checker) oneOf(path, v string, allowed ...string) {
	if v == "" || slices.Contains(allowed, v) {
		return
	}
	msg := fmt.Sprintf("%q is not one of %s", v, strings.Join(allowed, ", "))
	if s := suggest(v, allowed); s != "" {
		msg += fmt.Sprintf("; did you mean %q?", s)
	}
	c.add(path, "%s", msg)
}

func (c *checker) intRange(path string, v, lo, hi int64) {
	if c.has(path) && (v < lo || v > hi) {
		c.add(path, "%d is out of range: it must be between %d and %d", v, lo, hi)
	}
}

func (c *checker) check() {
	p := c.p
	switch {
	case c.d.typo["version"]:
	case !c.has("version"):
		c.e.add(c.root, "version is required: add \"version: %d\" at the top", FormatVersion)
	case p.Version != FormatVersion:
		c.add("version", "unsupported format version %d (this threadmill reads version %d)", p.Version, FormatVersion)
	}
	switch {
	case c.d.typo["name"], c.isBad("name"):
	case p.Name == "":
		c.e.add(c.at("name"), "name is required: it names the pipeline and its results directory")
	case !fileNameRe.MatchString(p.Name) || len(p.Name) > maxNameLen:
		c.add("name", "%q must be at most %d letters, digits, '.', '_' or '-', starting with a letter or digit (it names the results directory)", p.Name, maxNameLen)
	}
	c.checkSchedule()
	c.checkDefaults()
	c.checkLimits()
	for k := range p.Vars {
		if !identRe.MatchString(k) {
			c.e.add(c.keyAt("vars."+k), "vars.%s: a var name must be letters, digits and '_', starting with a letter or '_' (templates read it as .Vars.%s)", k, k)
		}
	}
	for name, set := range p.Artifacts {
		c.checkSet(name, set)
	}
	c.checkSteps()
	if r := p.Output.Report; r != "" {
		if _, ok := p.StepByID(r); !ok {
			msg := fmt.Sprintf("there is no step %q", r)
			if s := suggest(r, c.stepIDs()); s != "" {
				msg += fmt.Sprintf("; did you mean %q?", s)
			}
			c.add("output.report", "%s", msg)
		}
	}
	c.checkDelivery()
	if c.has("output.dir") && strings.TrimSpace(p.Output.Dir) == "" {
		c.add("output.dir", "must not be empty (leave it out for %q)", DefaultOutputDir)
	}
}

// forEachSets maps the ids of the steps with for_each to their sets.
func (c *checker) forEachSets() map[string]string {
	m := map[string]string{}
	for _, s := range c.p.Steps {
		if s.ForEach != "" {
			m[s.ID] = s.ForEach
		}
	}
	return m
}

func (c *checker) stepIDs() []string {
	ids := make([]string, 0, len(c.p.Steps))
	for _, s := range c.p.Steps {
		ids = append(ids, s.ID)
	}
	return ids
}

func (c *checker) checkSchedule() {
	s := c.p.Schedule
	if s == nil {
		return
	}
	switch {
	case strings.TrimSpace(s.Cron) == "" && c.has("schedule.cron"):
		c.add("schedule.cron", "must not be empty (5 fields such as \"0 9 * * MON\", or a descriptor such as @daily)")
	case strings.TrimSpace(s.Cron) == "":
		if c.absent("schedule.cron") {
			c.e.add(c.at("schedule"), "schedule.cron is required (5 fields such as \"0 9 * * MON\", or a descriptor such as @daily)")
		}
	default:
		if _, err := ParseCron(s.Cron); err != nil {
			c.add("schedule.cron", "%q does not parse: %v (use 5 fields: minute hour day-of-month month day-of-week, or @hourly, @daily, @weekly, @monthly, @yearly, @every <duration>)", s.Cron, err)
		}
	}
	if s.Timezone != "" {
		if _, err := time.LoadLocation(s.Timezone); err != nil || s.Timezone == "Local" {
			c.add("schedule.timezone", "%q is not a known IANA time zone (such as UTC or Europe/Madrid)", s.Timezone)
		}
	}
	c.oneOf("schedule.catchup", s.Catchup, CatchupNone, CatchupLatest, CatchupAll)
	c.intRange("schedule.catchup_limit", int64(s.CatchupLimit), 1, maxCatchupLimit)
	c.oneOf("schedule.overlap", s.Overlap, OverlapSkip, OverlapQueue, OverlapAllow)
}

func (c *checker) checkDefaults() {
	d := c.p.Defaults
	c.oneOf("defaults.agent", d.Agent, Agents...)
	c.intRange("defaults.max_tokens", int64(d.MaxTokens), 1, maxMaxTokens)
	c.checkTemperature("defaults.temperature", d.Temperature)
	c.oneOf("defaults.mode", d.Mode, ModeThread, ModeChat)
	c.checkRequestSurface("defaults", d.TopP, d.Seed, d.Priority, d.Tools)
	c.checkToolChoice("defaults.tool_choice", d.ToolChoice, d.Tools)
	if d.System != "" {
		c.checkTemplate("defaults.system", d.System, tplScope{allSteps: c.stepIDs(), vars: c.p.Vars})
	}
}

func (c *checker) checkTemperature(path string, t *float64) {
	if t != nil && (*t < 0 || *t > maxTemperature) {
		c.add(path, "%g is out of range: it must be between 0 and %g", *t, maxTemperature)
	}
}

func (c *checker) checkLimits() {
	l := c.p.Limits
	c.intRange("limits.concurrency", int64(l.Concurrency), 1, maxConcurrency)
	c.intRange("limits.requests_per_minute", int64(l.RequestsPerMinute), 1, maxRPM)
	c.intRange("limits.tokens_per_minute", int64(l.TokensPerMinute), 1, maxTPM)
	c.intRange("limits.max_total_tokens", l.MaxTotalTokens, 1, 1<<50)
	c.intRange("limits.max_attempts", int64(l.MaxAttempts), 1, maxAttemptsLimit)
	if c.has("limits.item_timeout") && (l.ItemTimeout.D() < minItemTimeout || l.ItemTimeout.D() > maxItemTimeout) {
		c.add("limits.item_timeout", "%s is out of range: it must be at least %s and at most %s", l.ItemTimeout, minItemTimeout, maxItemTimeout)
	}
}

func (c *checker) checkSet(name string, s ArtifactSet) {
	base := "artifacts." + name
	if !setNameRe.MatchString(name) {
		c.e.add(c.keyAt(base), "%s: a set name must be letters, digits, '_' or '-', starting with a letter or '_'", base)
	}
	var bases []string
	if c.has(base + ".ids") {
		bases = append(bases, "ids")
	}
	if s.All {
		bases = append(bases, "all")
	}
	if s.Folder != "" || c.has(base+".folder") {
		bases = append(bases, "folder")
	}
	switch {
	case len(bases) > 1:
		c.add(base, "choose one of %s: a set is either a list of ids, every artifact (all), or a folder", strings.Join(bases, " and "))
	case len(bases) == 0 && s.Name == "" && s.Type == "" && s.Updated == "":
		c.add(base, "selects nothing: give ids, all: true, folder, name, type or updated")
	case slices.Contains(bases, "ids") && (s.Name != "" || s.Type != "" || s.Updated != ""):
		c.add(base, "ids cannot be combined with name, type or updated (filter a folder or all instead)")
	}
	if c.has(base+".ids") && len(s.IDs) == 0 {
		c.add(base+".ids", "is empty: list at least one artifact id")
	}
	seen := map[string]int{}
	for i, id := range s.IDs {
		p := fmt.Sprintf("%s.ids[%d]", base, i)
		switch {
		case strings.TrimSpace(id) == "":
			c.add(p, "an artifact id must not be empty")
		case seen[id] > 0:
			c.add(p, "artifact id %q is listed twice", id)
		}
		seen[id]++
	}
	if c.has(base+".folder") && strings.Trim(strings.TrimSpace(s.Folder), "/") == "" {
		c.add(base+".folder", "must name a folder: its id, or a path of folder names such as \"Support/Tickets\"")
	}
	if s.Name != "" {
		if _, err := path.Match(s.Name, ""); err != nil {
			c.add(base+".name", "%q is not a valid glob pattern (use *, ? and [a-z])", s.Name)
		}
	}
	if s.Type == workspace.ArtifactTypeFolder {
		c.add(base+".type", "folders are never used as context; select a folder with folder: instead")
	} else {
		c.oneOf(base+".type", s.Type, ArtifactTypes...)
	}
	if s.Updated != "" {
		if _, err := parseUpdated(s.Updated); err != nil {
			c.add(base+".updated", "%v", err)
		}
	}
}

// updatedFilter is a parsed `updated` value.
type updatedFilter struct {
	window bool          // within the run window
	since  time.Time     // since an instant
	within time.Duration // within a duration before the run time
}

// parseUpdated reads `updated`: within_run_window, an RFC 3339 time or a date
// (since then), or a duration such as 168h (within that long before the run).
func parseUpdated(s string) (updatedFilter, error) {
	s = strings.TrimSpace(s)
	if s == UpdatedWithinRunWindow {
		return updatedFilter{window: true}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return updatedFilter{since: t}, nil
	}
	if dateRe.MatchString(s) {
		if t, err := time.Parse(time.DateOnly, s); err == nil {
			return updatedFilter{since: t}, nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return updatedFilter{within: d}, nil
	}
	return updatedFilter{}, fmt.Errorf("%q is not an updated filter: use %s, a time such as 2026-07-01 or 2026-07-01T09:00:00Z (updated since), or a duration such as 168h (updated within that long before the run)", s, UpdatedWithinRunWindow)
}

func (c *checker) checkSteps() {
	p := c.p
	if len(p.Steps) == 0 {
		if c.d.typo["steps"] {
			return
		}
		c.e.add(c.at("steps"), "steps is required: a pipeline needs at least one step")
		return
	}
	index := map[string]int{}
	setNames := make([]string, 0, len(p.Artifacts))
	for k := range p.Artifacts {
		setNames = append(setNames, k)
	}
	slices.Sort(setNames)
	all := c.stepIDs()
	for i, s := range p.Steps {
		base := fmt.Sprintf("steps[%d]", i)
		switch {
		case s.ID == "" && (c.d.typo[base+".id"] || c.isBad(base+".id")):
		case s.ID == "":
			c.e.add(c.at(base), "%s: id is required", base)
		case !identRe.MatchString(s.ID):
			c.add(base+".id", "%q must be letters, digits and '_', starting with a letter or '_' (templates read it as .Steps.%s)", s.ID, s.ID)
		}
		if j, dup := index[s.ID]; dup && s.ID != "" {
			c.add(base+".id", "step id %q is already used by steps[%d] (line %d)", s.ID, j, c.at(fmt.Sprintf("steps[%d].id", j)).line)
		} else if s.ID != "" {
			index[s.ID] = i
		}
		c.checkNeeds(i, s, index, all)
		if s.ForEach != "" {
			c.checkSetRef(base+".for_each", s.ForEach, setNames)
		}
		seen := map[string]bool{}
		for j, a := range s.Artifacts {
			pth := fmt.Sprintf("%s.artifacts[%d]", base, j)
			if seen[a] {
				c.add(pth, "set %q is listed twice", a)
			}
			seen[a] = true
			c.checkSetRef(pth, a, setNames)
		}
		c.checkStepSettings(base, s)
		c.checkStepTemplates(base, s)
	}
}

func (c *checker) checkSetRef(path, name string, setNames []string) {
	if _, ok := c.p.Artifacts[name]; ok {
		return
	}
	msg := fmt.Sprintf("there is no artifact set %q", name)
	if s := suggest(name, setNames); s != "" {
		msg += fmt.Sprintf("; did you mean %q?", s)
	} else if len(setNames) > 0 {
		msg += fmt.Sprintf(" (sets: %s)", strings.Join(setNames, ", "))
	} else {
		msg += " (define it under artifacts:)"
	}
	c.add(path, "%s", msg)
}

func (c *checker) checkNeeds(i int, s Step, earlier map[string]int, all []string) {
	seen := map[string]bool{}
	for j, n := range s.Needs {
		pth := fmt.Sprintf("steps[%d].needs[%d]", i, j)
		switch {
		case seen[n]:
			c.add(pth, "step %q is listed twice", n)
		case n == s.ID:
			c.add(pth, "a step cannot need itself")
		default:
			if k, ok := earlier[n]; ok && k < i {
				break
			}
			if slices.Contains(all, n) {
				c.add(pth, "step %q comes later in the file; needs may only name earlier steps (this also rules out cycles)", n)
				break
			}
			msg := fmt.Sprintf("there is no step %q", n)
			if sg := suggest(n, all[:i]); sg != "" {
				msg += fmt.Sprintf("; did you mean %q?", sg)
			}
			c.add(pth, "%s", msg)
		}
		seen[n] = true
	}
}

func (c *checker) checkStepSettings(base string, s Step) {
	c.oneOf(base+".mode", s.Mode, ModeThread, ModeChat)
	c.oneOf(base+".agent", s.Agent, Agents...)
	c.oneOf(base+".on_error", s.OnError, OnErrorContinue, OnErrorFail)
	c.oneOf(base+".reuse", s.Reuse, ReuseNever, ReuseUnchanged)
	c.intRange(base+".max_tokens", int64(s.MaxTokens), 1, maxMaxTokens)
	c.checkTemperature(base+".temperature", s.Temperature)
	c.oneOf(base+".thread.visibility", s.Thread.Visibility, workspace.VisibilityPrivate, workspace.VisibilityPublic)
	c.oneOf(base+".thread.per", s.Thread.Per, PerItem, PerRun)
	c.checkStepRequest(base, s)
	mode := cmp.Or(s.Mode, c.p.Defaults.Mode, ModeThread)
	if mode == ModeChat {
		where := base + ".mode"
		if !c.has(where) {
			where = "defaults.mode"
		}
		if s.ForEach != "" {
			c.add(base+".for_each", "mode chat cannot use artifacts: the one-shot chat body has no artifact ids (use mode: thread; %s is chat)", where)
		}
		if len(s.Artifacts) > 0 {
			c.add(base+".artifacts", "mode chat cannot use artifacts: the one-shot chat body has no artifact ids (use mode: thread; %s is chat)", where)
		}
		if len(s.Turns) > 0 {
			c.add(base+".turns", "turns need mode: thread: a one-shot chat has no thread to continue")
		}
		if c.has(base + ".thread") {
			c.add(base+".thread", "thread settings apply only to mode: thread")
		}
		if s.Agent == workspace.AgentProjectDeepResearch {
			c.add(base+".agent", "agent %s needs mode: thread", s.Agent)
		}
	}
	if strings.TrimSpace(s.Prompt) == "" {
		if c.has(base + ".prompt") {
			c.add(base+".prompt", "must not be empty")
		} else if c.absent(base + ".prompt") {
			c.e.add(c.at(base), "%s: prompt is required", base)
		}
	}
	for j, t := range s.Turns {
		if strings.TrimSpace(t) == "" {
			c.add(fmt.Sprintf("%s.turns[%d]", base, j), "a turn must not be empty")
		}
	}
}

func (c *checker) checkStepTemplates(base string, s Step) {
	sc := tplScope{forEach: s.ForEach != "", needs: s.Needs, allSteps: c.stepIDs(), stepID: s.ID, vars: c.p.Vars,
		forEachSets: c.forEachSets(), schemas: c.schemaFields()}
	// needs that failed their own checks are still offered, so one mistake
	// does not cascade into template errors.
	c.checkTemplate(base+".prompt", s.Prompt, sc)
	for j, t := range s.Turns {
		c.checkTemplate(fmt.Sprintf("%s.turns[%d]", base, j), t, sc)
	}
	if s.System != "" {
		c.checkTemplate(base+".system", s.System, sc)
	}
	if s.Thread.Name != "" {
		tsc := sc
		tsc.perRunThread = s.ForEach != "" && s.Thread.Per == PerRun
		c.checkTemplate(base+".thread.name", s.Thread.Name, tsc)
	}
}

// checkTemplate checks one template and reports its problems at their
// positions in the file.
func (c *checker) checkTemplate(path, text string, sc tplScope) {
	if text == "" {
		return
	}
	for _, pr := range checkTemplate(path, text, sc) {
		c.e.add(c.tplPos(path, text, pr), "%s: %s", path, pr.msg)
	}
}

// tplPos maps a problem inside a template to the file. A literal block
// (|) keeps its lines, so the mapping is exact. Other styles fold lines,
// drop indentation and interpret escapes, so the problem's token is looked
// up in the scalar's source instead; when that fails the problem is placed
// at the start of the value.
func (c *checker) tplPos(path, text string, pr tplProblem) pos {
	n := c.d.raw[path]
	if n == nil {
		return c.at(path)
	}
	if n.Style&yaml.LiteralStyle != 0 {
		lines := strings.Split(text, "\n")
		l := n.Line + pr.line
		if pr.line < 1 || pr.line > len(lines) || l-1 >= len(c.src) {
			return nodePos(n)
		}
		tl := lines[pr.line-1]
		indent := max(0, leadingSpace(c.src[l-1])-leadingSpace(tl))
		return pos{l, indent + max(pr.col, 1)}
	}
	if pr.col > 0 {
		if p, ok := c.findToken(path, n, text, pr.off); ok {
			return p
		}
	}
	return nodePos(n)
}

// leadingSpace counts a line's leading blanks.
func leadingSpace(s string) int { return len(s) - len(strings.TrimLeft(s, " \t")) }

// findToken finds, in the source of scalar n at path, the word of text that
// starts at byte off: its k-th occurrence, where k counts the occurrences
// before off in the text. The search starts at the value and stops at the
// first line indented no deeper than the value's key (or list dash), where
// the scalar has certainly ended.
func (c *checker) findToken(path string, n *yaml.Node, text string, off int) (pos, bool) {
	if off < 0 || off >= len(text) {
		return pos{}, false
	}
	end := strings.IndexAny(text[off:], " \t\n")
	if end < 0 {
		end = len(text) - off
	}
	tok := text[off : off+min(end, 64)]
	if tok == "" {
		return pos{}, false
	}
	k := strings.Count(text[:off], tok)
	limit := c.parentCol(path) - 1
	for l := n.Line; l <= len(c.src); l++ {
		line := c.src[l-1]
		from := 0
		if l == n.Line {
			from = byteOffset(line, n.Column-1)
		} else if strings.TrimSpace(line) != "" && leadingSpace(line) <= limit {
			break
		}
		for {
			i := strings.Index(line[from:], tok)
			if i < 0 {
				break
			}
			if k == 0 {
				return pos{l, utf8.RuneCountInString(line[:from+i]) + 1}, true
			}
			k--
			from += i + len(tok)
		}
	}
	return pos{}, false
}

// parentCol is the column of the key of the value at path, or of the dash
// of a list item: lines of a multi-line value are indented deeper.
func (c *checker) parentCol(path string) int {
	if strings.HasSuffix(path, "]") {
		if p, ok := c.d.pos[path[:strings.LastIndexByte(path, '[')]]; ok {
			return p.col
		}
		return 1
	}
	if p, ok := c.d.keyPos[path]; ok {
		return p.col
	}
	return 1
}

// byteOffset converts a 0-based rune column of s to a byte offset.
func byteOffset(s string, col int) int {
	for i := range s {
		if col == 0 {
			return i
		}
		col--
	}
	return len(s)
}
