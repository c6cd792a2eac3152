package simulator

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/threadmill/threadmill/workspace"
)

// Route schemes of Compat.Routes (workspace-api.md §11).
const (
	// RoutesCurrent serves the routes of the spec from 2025-12 on.
	RoutesCurrent = "current"
	// RoutesProject serves the project-scoped routes of servers up to spec
	// 2025-11: POST /app/project/{projectId}/interaction (thread_id in the
	// body), /app/project/{projectId}/interaction/{id}[/cancel|/stream],
	// /app/project/{projectId}/thread/{threadId}[/interaction]. The current
	// thread and interaction routes then answer the same route-level 404 as
	// any unknown path ({"message":"no route for GET /api/..."}).
	RoutesProject = "project"
)

// Answers to a stream request for an interaction that has finished
// (Compat.FinishedStream, workspace-api.md §12 question 2).
const (
	// FinishedStreamReplay replays the whole answer, then message_stop.
	FinishedStreamReplay = "replay"
	// FinishedStreamClose answers 200 text/event-stream and closes at once,
	// sending no event.
	FinishedStreamClose = "close"
	// FinishedStream409 answers 409 Conflict with a JSON error.
	FinishedStream409 = "409"
)

// End states of a cancelled interaction (Compat.CancelEnd, workspace-api.md
// §12 questions 3 and 4).
const (
	// CancelEndCompleted: state Completed, stop_reason "cancelled", the
	// output produced until the cancel.
	CancelEndCompleted = "completed"
	// CancelEndError: state Error, stop_reason "cancelled", an error of type
	// "cancelled" (the spec's vocabulary: no Cancelled state).
	CancelEndError = "error"
	// CancelEndStop: state Completed, stop_reason "stop", as a server that
	// does not tell a cancelled answer from a finished one.
	CancelEndStop = "stop"
)

// Answers of POST /app/chat (Compat.ChatUsage, workspace-api.md §7.1 and
// §12 question 5).
const (
	// ChatUsageWith answers with usage and stop_reason.
	ChatUsageWith = "with"
	// ChatUsageWithout answers as the guide's example: no usage and no
	// stop_reason.
	ChatUsageWithout = "without"
)

// Answers of POST /thread/{threadId}/interaction (Compat.Create,
// workspace-api.md §5 and §12 question 1).
const (
	// CreateBlocking answers 201 once the interaction has finished, with
	// state Completed (or Error) and the whole answer.
	CreateBlocking = "blocking"
	// CreateAsync answers 201 at once with state Processing; the answer
	// is produced in the background and followed on /stream or by GET.
	CreateAsync = "async"
)

// Bodies of a 400 from POST /app/chat/validate (Compat.Validate400,
// workspace-api.md §7.2 and §12 question 6). Each carries the same
// message, "invalid request: <first problem>".
const (
	// Validate400Valid is ZylonGPT's shape:
	// {"valid": false, "message": "...", "errors": ["...", ...]}.
	Validate400Valid = "valid"
	// Validate400DetailList is FastAPI's validation error:
	// {"detail": [{"type": "value_error", "loc": ["body"], "msg": "...", "input": null}, ...]}.
	Validate400DetailList = "detail-list"
	// Validate400DetailString is FastAPI's HTTPException:
	// {"detail": "..."}.
	Validate400DetailString = "detail-string"
	// Validate400Message is {"message": "..."} alone.
	Validate400Message = "message"
	// Validate400Error is the typed error of §9:
	// {"error": {"type": "invalid_request_error", "message": "..."}}.
	Validate400Error = "error"
	// Validate400Text is a text/plain body holding the message.
	Validate400Text = "text"
)

// Sizes in the artifact DTO (Compat.ArtifactSize, workspace-api.md §8.2
// and §8.5).
const (
	// ArtifactSizeWith serves a Document's props with content_length, the
	// bytes uploaded (the guide requires it on upload).
	ArtifactSizeWith = "with"
	// ArtifactSizeWithout serves props with file_name and content_type
	// only (the spec requires no more): the DTO then gives no size.
	ArtifactSizeWithout = "without"
)

// Paging of the listings (Compat.Pagination, workspace-api.md §3 and §12
// question 8).
const (
	// PaginationPage honours page and after (after wins).
	PaginationPage = "page"
	// PaginationCursor ignores page: a request without after is the first
	// page, and only after=<next_cursor> moves on.
	PaginationCursor = "cursor"
)

// Compat chooses which of the documented possibilities the simulator
// serves where the docs leave the server's behaviour open (§11 version
// drift, §12 open questions). The zero value serves the newest server as
// the simulator always has.
type Compat struct {
	// Routes is RoutesCurrent or RoutesProject. Default RoutesCurrent.
	Routes string
	// Create is CreateBlocking or CreateAsync. Default CreateBlocking
	// (unless Config.Async is set, which is the same as CreateAsync).
	Create string
	// FinishedStream is what /stream answers once the interaction has
	// finished: FinishedStreamReplay, FinishedStreamClose or
	// FinishedStream409. Default FinishedStreamReplay.
	FinishedStream string
	// CancelEnd is the end state of a cancelled interaction:
	// CancelEndCompleted, CancelEndError or CancelEndStop. Default
	// CancelEndCompleted.
	CancelEnd string
	// ChatUsage is ChatUsageWith or ChatUsageWithout. Default ChatUsageWith.
	ChatUsage string
	// Validate400 is the body of a 400 from /app/chat/validate: one of the
	// Validate400* shapes. Default Validate400Valid.
	Validate400 string
	// ArtifactSize is ArtifactSizeWith or ArtifactSizeWithout. Default
	// ArtifactSizeWith.
	ArtifactSize string
	// MaxPageSize, when > 0, is the largest page_size a listing accepts:
	// beyond it the listing answers 422 with a FastAPI-style
	// {"detail": [{"loc": ["query", "page_size"], ...}]}. Default 0: the
	// simulator's own limit of 1000, answered with 400.
	MaxPageSize int
	// Pagination is PaginationPage or PaginationCursor. Default
	// PaginationPage.
	Pagination string
}

// compatKeys are the keys of ParseCompat with their allowed values.
var compatKeys = map[string][]string{
	"profile":         profileNames(),
	"routes":          {RoutesCurrent, RoutesProject},
	"create":          {CreateBlocking, CreateAsync},
	"finished-stream": {FinishedStreamReplay, FinishedStreamClose, FinishedStream409},
	"cancel-end":      {CancelEndCompleted, CancelEndError, CancelEndStop},
	"chat-usage":      {ChatUsageWith, ChatUsageWithout},
	"validate-400":    {Validate400Valid, Validate400DetailList, Validate400DetailString, Validate400Message, Validate400Error, Validate400Text},
	"artifact-size":   {ArtifactSizeWith, ArtifactSizeWithout},
	"max-page-size":   {"N (an integer >= 1)"},
	"pagination":      {PaginationPage, PaginationCursor},
}

// ParseCompat reads "KEY=VALUE,..." switches, e.g.
// "routes=project,finished-stream=409". Keys: profile (a name of Profiles:
// every switch of the preset, which the keys after it override), routes
// (current | project), create (blocking | async), finished-stream (replay |
// close | 409), cancel-end (completed | error | stop), chat-usage (with |
// without), validate-400 (valid | detail-list | detail-string | message |
// error | text), artifact-size (with | without), max-page-size (an
// integer >= 1), pagination (page | cursor). An empty string is the zero
// Compat. Errors name the key and the allowed values.
func ParseCompat(s string) (Compat, error) {
	var c Compat
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		allowed, known := compatKeys[k]
		switch {
		case !ok:
			return Compat{}, fmt.Errorf("compat switch %q: want KEY=VALUE", part)
		case !known:
			keys := make([]string, 0, len(compatKeys))
			for k := range compatKeys {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			return Compat{}, fmt.Errorf("compat switch %q: unknown key %q (known: %s)", part, k, strings.Join(keys, ", "))
		}
		if k == "max-page-size" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return Compat{}, fmt.Errorf("compat switch %s=%s: want an integer >= 1", k, v)
			}
			c.MaxPageSize = n
			continue
		}
		valid := false
		for _, a := range allowed {
			valid = valid || a == v
		}
		if !valid {
			return Compat{}, fmt.Errorf("compat switch %s=%s: want one of %s", k, v, strings.Join(allowed, " | "))
		}
		if k == "profile" {
			c = Profiles[v].Compat
			continue
		}
		*c.field(k) = v
	}
	return c, nil
}

// field returns the switch named by a key of compatKeys (other than
// profile and max-page-size).
func (c *Compat) field(key string) *string {
	return map[string]*string{
		"routes": &c.Routes, "create": &c.Create, "finished-stream": &c.FinishedStream,
		"cancel-end": &c.CancelEnd, "chat-usage": &c.ChatUsage, "validate-400": &c.Validate400,
		"artifact-size": &c.ArtifactSize, "pagination": &c.Pagination,
	}[key]
}

// validate reports an unknown value, naming the field.
func (c Compat) validate() error {
	switch c.Routes {
	case "", RoutesCurrent, RoutesProject:
	default:
		return fmt.Errorf("simulator: Compat.Routes must be %q or %q, got %q", RoutesCurrent, RoutesProject, c.Routes)
	}
	switch c.Create {
	case "", CreateBlocking, CreateAsync:
	default:
		return fmt.Errorf("simulator: Compat.Create must be %q or %q, got %q", CreateBlocking, CreateAsync, c.Create)
	}
	switch c.Validate400 {
	case "", Validate400Valid, Validate400DetailList, Validate400DetailString, Validate400Message, Validate400Error, Validate400Text:
	default:
		return fmt.Errorf("simulator: Compat.Validate400 must be valid, detail-list, detail-string, message, error or text, got %q", c.Validate400)
	}
	switch c.FinishedStream {
	case "", FinishedStreamReplay, FinishedStreamClose, FinishedStream409:
	default:
		return fmt.Errorf("simulator: Compat.FinishedStream must be replay, close or 409, got %q", c.FinishedStream)
	}
	switch c.CancelEnd {
	case "", CancelEndCompleted, CancelEndError, CancelEndStop:
	default:
		return fmt.Errorf("simulator: Compat.CancelEnd must be completed, error or stop, got %q", c.CancelEnd)
	}
	switch c.ChatUsage {
	case "", ChatUsageWith, ChatUsageWithout:
	default:
		return fmt.Errorf("simulator: Compat.ChatUsage must be with or without, got %q", c.ChatUsage)
	}
	switch c.ArtifactSize {
	case "", ArtifactSizeWith, ArtifactSizeWithout:
	default:
		return fmt.Errorf("simulator: Compat.ArtifactSize must be with or without, got %q", c.ArtifactSize)
	}
	if c.MaxPageSize < 0 {
		return fmt.Errorf("simulator: Compat.MaxPageSize must be >= 0, got %d", c.MaxPageSize)
	}
	switch c.Pagination {
	case "", PaginationPage, PaginationCursor:
	default:
		return fmt.Errorf("simulator: Compat.Pagination must be page or cursor, got %q", c.Pagination)
	}
	return nil
}

// checkPageSize answers a page_size beyond MaxPageSize as FastAPI does:
// 422 with {"detail": [{"type", "loc", "msg", "input", "ctx"}]}. Other
// page_size errors are left to paginate.
func (c Compat) checkPageSize(v string) *httpError {
	if c.MaxPageSize <= 0 || v == "" {
		return nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= c.MaxPageSize {
		return nil
	}
	msg := fmt.Sprintf("Input should be less than or equal to %d", c.MaxPageSize)
	return &httpError{status: http.StatusUnprocessableEntity, msg: msg, body: map[string]any{
		"detail": []map[string]any{{
			"type":  "less_than_equal",
			"loc":   []string{"query", "page_size"},
			"msg":   msg,
			"input": v,
			"ctx":   map[string]int{"le": c.MaxPageSize},
		}},
	}}
}

// String renders the switches that differ from the default, as ParseCompat
// reads them ("" for the default).
func (c Compat) String() string {
	var parts []string
	if c.Routes != "" && c.Routes != RoutesCurrent {
		parts = append(parts, "routes="+c.Routes)
	}
	if c.Create != "" && c.Create != CreateBlocking {
		parts = append(parts, "create="+c.Create)
	}
	if c.FinishedStream != "" && c.FinishedStream != FinishedStreamReplay {
		parts = append(parts, "finished-stream="+c.FinishedStream)
	}
	if c.CancelEnd != "" && c.CancelEnd != CancelEndCompleted {
		parts = append(parts, "cancel-end="+c.CancelEnd)
	}
	if c.ChatUsage != "" && c.ChatUsage != ChatUsageWith {
		parts = append(parts, "chat-usage="+c.ChatUsage)
	}
	if c.Validate400 != "" && c.Validate400 != Validate400Valid {
		parts = append(parts, "validate-400="+c.Validate400)
	}
	if c.ArtifactSize != "" && c.ArtifactSize != ArtifactSizeWith {
		parts = append(parts, "artifact-size="+c.ArtifactSize)
	}
	if c.MaxPageSize > 0 {
		parts = append(parts, "max-page-size="+strconv.Itoa(c.MaxPageSize))
	}
	if c.Pagination != "" && c.Pagination != PaginationPage {
		parts = append(parts, "pagination="+c.Pagination)
	}
	return strings.Join(parts, ",")
}

// Compat returns the switches the simulator serves.
func (s *Server) Compat() Compat { return s.compat }

// routeIn records that pattern belongs to one route scheme (patterns not
// recorded are served in every scheme).
func (s *Server) routeIn(scheme, pattern string) string {
	if s.schemeOf == nil {
		s.schemeOf = map[string]string{}
	}
	s.schemeOf[pattern] = scheme
	return pattern
}

// served reports whether the simulator serves the route pattern.
func (s *Server) served(pattern string) bool {
	sch, ok := s.schemeOf[pattern]
	if !ok {
		return true
	}
	want := s.compat.Routes
	if want == "" {
		want = RoutesCurrent
	}
	return sch == want
}

// projectScoped wraps a handler of a current route for its project-scoped
// twin: the project of the path must be the simulator's.
func (s *Server) projectScoped(fn func(http.ResponseWriter, *http.Request) *httpError) func(http.ResponseWriter, *http.Request) *httpError {
	return func(w http.ResponseWriter, r *http.Request) *httpError {
		if e := s.checkProject(r); e != nil {
			return e
		}
		return fn(w, r)
	}
}

// handleCreateInteractionInProject serves the project-scoped create, whose
// thread is named by thread_id in the body: it becomes the threadId of the
// current route's handler, which then checks the body as usual.
func (s *Server) handleCreateInteractionInProject(w http.ResponseWriter, r *http.Request) *httpError {
	if e := s.checkProject(r); e != nil {
		return e
	}
	data, err := io.ReadAll(io.LimitReader(r.Body, s.maxBody+1))
	if err != nil {
		return errorf(http.StatusBadRequest, "reading request body: %v", err)
	}
	r.Body = io.NopCloser(bytes.NewReader(data))
	var head struct {
		ThreadID json.RawMessage `json:"thread_id"`
	}
	var tid string
	if json.Unmarshal(data, &head) == nil && json.Unmarshal(head.ThreadID, &tid) == nil && tid != "" {
		r.SetPathValue("threadId", tid)
		return s.handleCreateInteraction(w, r)
	}
	if int64(len(data)) > s.maxBody {
		return errorf(http.StatusRequestEntityTooLarge, "request body exceeds %d bytes", s.maxBody)
	}
	return errorf(http.StatusBadRequest, "thread_id is required: the project-scoped create names its thread in the body")
}

// sized drops content_length from an artifact's props under
// artifact-size=without.
func (c Compat) sized(a workspace.Artifact) workspace.Artifact {
	if c.ArtifactSize != ArtifactSizeWithout || len(a.Props) == 0 {
		return a
	}
	var props map[string]json.RawMessage
	if json.Unmarshal(a.Props, &props) != nil {
		return a
	}
	delete(props, "content_length")
	a.Props, _ = json.Marshal(props)
	return a
}
