// Package simulator is an in-memory stand-in for the Zylon Workspace API
// (see workspace-api.md): one project with threads, interactions and
// artifacts, a deterministic responder, and knobs for latency, asynchronous
// completion, fault injection and a server-side rate limit. A *Server is an
// http.Handler; serve it with httptest.NewServer in tests or with
// `threadmill simulate`.
//
// The simulator is strict like the real API: every /api/v1/app/* request
// needs an x-org header (and the Bearer token when Config.Token is set),
// request bodies are checked for types and ranges (unknown JSON fields are
// tolerated, as Jackson does by default), and the status codes are the
// documented ones: 201 for a created interaction, 204 for cancel and for a
// valid chat/validate, 409 when cancelling a finished interaction.
//
// Routes (all JSON unless noted; the pattern is the key of Counters.Requests):
//
//	GET    /api/health                                    {"status":"ok"}, no auth
//	GET    /_sim/counters                                 Counters as JSON, no auth
//	DELETE /_sim/counters                                 ResetCounters, 204, no auth
//	GET    /api/v1/app/me                                 the UserDTO
//	POST   /api/v1/app/project/{projectId}/thread         create a thread, 200
//	GET    /api/v1/app/project/{projectId}/thread         list threads (state, page params)
//	GET    /api/v1/app/thread/{threadId}                  get a thread
//	PUT    /api/v1/app/thread/{threadId}                  rename / change visibility
//	DELETE /api/v1/app/thread/{threadId}                  mark Deleted (cancels its interactions), 200
//	POST   /api/v1/app/thread/{threadId}/interaction      create an interaction, 201
//	GET    /api/v1/app/thread/{threadId}/interaction      list a thread's interactions
//	GET    /api/v1/app/interaction/{interactionId}        get an interaction
//	DELETE /api/v1/app/interaction/{interactionId}        delete (cancels it if processing), 200
//	POST   /api/v1/app/interaction/{interactionId}/cancel 204; 409 once finished
//	GET    /api/v1/app/interaction/{interactionId}/stream SSE (text/event-stream)
//	POST   /api/v1/app/chat                               one-shot chat, 200
//	POST   /api/v1/app/chat/validate                      204, or 400 {"valid":false,...}
//	GET    /api/v1/app/project/{projectId}/artifact       list artifacts (§8.3 filters)
//	GET    /api/v1/app/project/{projectId}/artifact/{artifactId}
//	POST   /api/v1/app/project/{projectId}/artifact       create: a Document as strict multipart
//	                                                      (type, name, props, fileData), a Folder or
//	                                                      InlineText as JSON, 200
//	PUT    /api/v1/app/project/{projectId}/artifact/{artifactId}  update name, description, content
//
// With Config.Compat.Routes = RoutesProject the thread and interaction
// routes above (GET/PUT/DELETE thread, and every interaction route) are
// replaced by their project-scoped twins of servers up to spec 2025-11:
//
//	POST   /api/v1/app/project/{projectId}/interaction            thread_id in the body, 201
//	GET    /api/v1/app/project/{projectId}/thread/{threadId}/interaction
//	GET|DELETE /api/v1/app/project/{projectId}/interaction/{interactionId}
//	POST   /api/v1/app/project/{projectId}/interaction/{interactionId}/cancel
//	GET    /api/v1/app/project/{projectId}/interaction/{interactionId}/stream
//	GET|PUT|DELETE /api/v1/app/project/{projectId}/thread/{threadId}
//
// and the replaced routes answer 404 like any unknown path. Compat also
// chooses whether create blocks, what the stream of a finished interaction
// answers, how a cancelled interaction ends, whether /app/chat answers
// carry usage, the body of a 400 from validate, whether artifacts report
// their size, a maximum page_size (422 beyond it) and cursor-only paging;
// Profiles name sets of switches (the oldest and newest servers).
//
// Errors are JSON {"message": "...", "errors": ["..."]} naming the field or
// header at fault (except the injected 502, whose body is an HTML proxy
// page). pgpt.stream is accepted and ignored: follow an interaction with its
// /stream route. A cancelled interaction ends in state Completed with
// stop_reason "cancelled" and the output produced until then; a finished one
// has stop_reason "end_turn", or "max_tokens" when its answer was cut.
//
// The rest of the ChatRequest is answered too: a response_format json_schema
// request gets a JSON value valid for the schema, built from the referenced
// artifacts ("Label: value" lines for properties of that name, enum values
// found in them, their best-matching sentences otherwise), and a malformed
// schema is a 400 (Faults.InvalidJSON makes answers invalid, to exercise
// repair); system.citations adds a source block (one context.chunk per
// referenced artifact, at most ten) and citations on the text block;
// thinking adds a thinking block, billed as output. Tools, tool_choice,
// seed and priority are checked and otherwise ignored.
//
// Determinism: ids, answers and token counts depend only on the requests
// received and their order (and on Config.Now for timestamps). Artifact ids
// seeded by AddDir depend only on the file's path, so they are stable across
// runs. Fault injection and latency jitter draw from a random source seeded
// with Faults.Seed.
package simulator

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// DefaultProjectID is the id of the simulated project when Config.ProjectID
// is empty.
const DefaultProjectID = "proj_7a5c3e1b9d2f4a6c"

// DefaultOrg is the accepted x-org slug when Config.Org is empty.
const DefaultOrg = "default"

// DefaultOrgID is the organisation UUID of the simulated org; x-org may carry
// it instead of the slug, as on the real API.
const DefaultOrgID = "5d0f3c2a-8e41-4b7a-9c6e-1f2a3b4c5d6e"

// Model is the model name the simulator reports in answers.
const Model = "default"

// DefaultLagDuration is how long an interaction created under
// Faults.ReplicaLag stays invisible to reads.
const DefaultLagDuration = time.Second

// DefaultMaxTokens is the answer budget when a request sets no max_tokens.
const DefaultMaxTokens = 1024

// MaxMaxTokens is the largest max_tokens the simulator accepts.
const MaxMaxTokens = 32768

// Config configures a simulated Workspace. The zero value is usable: every
// field documents its default.
type Config struct {
	// ProjectID is the id of the one project. Default DefaultProjectID.
	ProjectID string
	// Org is the accepted x-org value (the org slug). Several slugs may be
	// given comma-separated. The org UUID DefaultOrgID is always accepted
	// too. Default "default".
	Org string
	// Token, when set, must be sent as "Authorization: Bearer <Token>" on
	// every /api/v1/app/* request. Empty: no token is required.
	Token string
	// Async makes interaction creation return 201 with state Processing; the
	// interaction completes after its latency while the stream delivers deltas
	// as they are produced. When false, create blocks for the latency and
	// returns the interaction Completed. Compat.Create = CreateAsync is the
	// same switch.
	Async bool
	// Latency is the time to the first output token (sync and async modes,
	// and /app/chat). Default 0.
	Latency time.Duration
	// PerOutputToken is added per output token. Default 0.
	PerOutputToken time.Duration
	// Jitter, when positive, adds a uniform random offset in [-Jitter, +Jitter]
	// to Latency (never making it negative), drawn from the seeded source.
	Jitter time.Duration
	// PingInterval is the period of ping keep-alives on the stream of an
	// interaction still processing. Default 1s.
	PingInterval time.Duration
	// Faults injects failures at the given rates. Default none.
	Faults Faults
	// RateLimit is the number of requests per second accepted across
	// /api/v1/app/*; beyond it the simulator answers 429 with Retry-After.
	// 0 disables the limit.
	RateLimit float64
	// RateBurst is the rate limiter's bucket size. Default max(1, ceil(RateLimit)).
	RateBurst int
	// MaxBodyBytes is the largest request body accepted; a larger one is
	// answered 413, as the real API does for a too-large chat. Default
	// DefaultMaxBodyBytes (8 MiB).
	MaxBodyBytes int64
	// Now is the clock for created_at, updated_at and created. Default
	// time.Now. Latency always uses the real clock.
	Now func() time.Time
	// Logger receives one debug line per request (never the token). Default:
	// discard.
	Logger *slog.Logger
	// Compat serves one of the documented possibilities where servers
	// differ (route scheme, stream of a finished interaction). Default: the
	// newest server (see Compat).
	Compat Compat
}

// Faults are per-request failure rates in [0, 1]. The four status faults
// (Error500, Error502, Error503, TooMany429) are disjoint outcomes of one draw
// per /api/v1/app/* request: their sum should not exceed 1. Slow,
// CutStream, InteractionError, LostCreate and ReplicaLag are independent
// draws; CutStream applies to stream requests only, InteractionError,
// LostCreate and ReplicaLag to interaction creation only.
type Faults struct {
	// Error500 answers 500 with a JSON error body.
	Error500 float64
	// Error502 answers 502 with an HTML body, as a failing reverse proxy does.
	Error502 float64
	// Error503 answers 503 with a JSON error body and Retry-After.
	Error503 float64
	// TooMany429 answers 429 with Retry-After.
	TooMany429 float64
	// RetryAfter is the Retry-After of injected 429 and 503 answers, rounded
	// up to whole seconds. Default 1s.
	RetryAfter time.Duration
	// CutStream aborts an interaction stream midway: the connection is closed
	// after about half the deltas, without message_delta or message_stop.
	CutStream float64
	// Slow delays the request by SlowDelay before serving it.
	Slow float64
	// SlowDelay is the delay of a slow request. Default 2s.
	SlowDelay time.Duration
	// InteractionError makes a created interaction end in state Error with
	// assistant_output.errors set, instead of Completed.
	InteractionError float64
	// LostCreate creates the interaction (it runs and is billed) but answers
	// the POST with a 504 HTML page, as a proxy that timed out does: a client
	// that blindly re-creates pays twice; one that looks the interaction up
	// (by pgpt.correlation_id) does not.
	LostCreate float64
	// ReplicaLag makes a created interaction invisible to reads for
	// LagDuration after the 201 that created it, as a read replica that has
	// not caught up: GET, stream, cancel and delete answer 404 and the
	// thread's list omits it. A client that forgets the interaction on the
	// first 404 creates (and pays for) another.
	ReplicaLag float64
	// LagDuration is how long a lagging interaction stays invisible.
	// Default DefaultLagDuration.
	LagDuration time.Duration
	// InvalidJSON is not a rate: the first InvalidJSON answers to
	// response_format json_schema requests of each thread (of each chat
	// conversation: the assistant messages a chat request carries count
	// as its earlier answers) are invalid for their schema: the value
	// without its first required field, in prose (or cut JSON in a code
	// fence when nothing is required). Later answers are valid, so a
	// client that repairs in the same thread gets a valid answer after
	// exactly InvalidJSON repairs. Default 0.
	InvalidJSON int
	// Seed seeds the random source of faults and jitter. The same seed and
	// the same request sequence give the same faults.
	Seed uint64
}

// Validate reports the first invalid field of the configuration, by name:
// rates outside [0, 1], status fault rates adding up to more than 1, and
// negative durations, limits or sizes. New does not validate: it takes any
// value, treating out-of-range ones as the nearest valid value.
func (c Config) Validate() error {
	f := c.Faults
	for _, r := range []struct {
		name string
		v    float64
	}{
		{"Faults.Error500", f.Error500}, {"Faults.Error502", f.Error502}, {"Faults.Error503", f.Error503},
		{"Faults.TooMany429", f.TooMany429}, {"Faults.CutStream", f.CutStream}, {"Faults.Slow", f.Slow},
		{"Faults.InteractionError", f.InteractionError}, {"Faults.LostCreate", f.LostCreate},
		{"Faults.ReplicaLag", f.ReplicaLag},
	} {
		if !(r.v >= 0 && r.v <= 1) {
			return fmt.Errorf("simulator: %s must be a rate in [0, 1], got %g", r.name, r.v)
		}
	}
	if f.InvalidJSON < 0 {
		return fmt.Errorf("simulator: Faults.InvalidJSON must not be negative, got %d", f.InvalidJSON)
	}
	if sum := f.Error500 + f.Error502 + f.Error503 + f.TooMany429; sum > 1 {
		return fmt.Errorf("simulator: Faults.Error500+Error502+Error503+TooMany429 must not exceed 1, got %g", sum)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"Latency", c.Latency}, {"PerOutputToken", c.PerOutputToken}, {"Jitter", c.Jitter},
		{"PingInterval", c.PingInterval}, {"Faults.RetryAfter", f.RetryAfter}, {"Faults.SlowDelay", f.SlowDelay},
		{"Faults.LagDuration", f.LagDuration},
	} {
		if d.v < 0 {
			return fmt.Errorf("simulator: %s must not be negative, got %s", d.name, d.v)
		}
	}
	if err := c.Compat.validate(); err != nil {
		return err
	}
	if c.Async && c.Compat.Create == CreateBlocking {
		return fmt.Errorf("simulator: Async contradicts Compat.Create %q", CreateBlocking)
	}
	switch {
	case !(c.RateLimit >= 0):
		return fmt.Errorf("simulator: RateLimit must be >= 0 requests per second, got %g", c.RateLimit)
	case c.RateBurst < 0:
		return fmt.Errorf("simulator: RateBurst must be >= 0, got %d", c.RateBurst)
	case c.MaxBodyBytes < 0:
		return fmt.Errorf("simulator: MaxBodyBytes must be >= 0, got %d", c.MaxBodyBytes)
	}
	return nil
}

// Server is a simulated Workspace API. It implements http.Handler and is
// safe for concurrent use.
type Server struct {
	projectID string
	orgs      []string
	token     string
	maxBody   int64
	now       func() time.Time
	log       *slog.Logger
	mux       *http.ServeMux
	compat    Compat
	schemeOf  map[string]string // route pattern -> scheme (Compat.Routes); set by routes

	knobMu  sync.Mutex // guards the knobs below and rng
	async   bool
	latency time.Duration
	perTok  time.Duration
	jitter  time.Duration
	ping    time.Duration
	faults  Faults
	limiter *rate.Limiter
	rng     *rand.Rand

	mu       sync.Mutex // guards the store and the counters
	store    store
	counters counters
	closed   bool
	wg       sync.WaitGroup
	stop     chan struct{}
}

var _ http.Handler = (*Server)(nil)

// New returns a simulator with an empty project. Seed it with AddDir or
// AddArtifact; stop its background timers with Close.
func New(cfg Config) *Server {
	s := &Server{
		projectID: cmp.Or(cfg.ProjectID, DefaultProjectID),
		token:     cfg.Token,
		maxBody:   cfg.MaxBodyBytes,
		now:       cfg.Now,
		log:       cfg.Logger,
		stop:      make(chan struct{}),
		compat:    cfg.Compat,
	}
	for o := range strings.SplitSeq(cmp.Or(cfg.Org, DefaultOrg), ",") {
		if o = strings.TrimSpace(o); o != "" {
			s.orgs = append(s.orgs, o)
		}
	}
	s.orgs = append(s.orgs, DefaultOrgID)
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.async = cfg.Async || cfg.Compat.Create == CreateAsync
	s.latency, s.perTok, s.jitter = cfg.Latency, cfg.PerOutputToken, cfg.Jitter
	s.ping = cmpDur(cfg.PingInterval, time.Second)
	if s.maxBody <= 0 {
		s.maxBody = DefaultMaxBodyBytes
	}
	s.faults = cfg.Faults
	s.rng = rand.New(rand.NewPCG(cfg.Faults.Seed, 0x7468726561646d6c))
	s.limiter = newLimiter(cfg.RateLimit, cfg.RateBurst)
	s.store = newStore(s.projectID)
	s.counters = newCounters()
	s.routes()
	return s
}

// ProjectID returns the id of the simulated project.
func (s *Server) ProjectID() string { return s.projectID }

// Close stops the completion timers of processing interactions and ends open
// streams. Processing interactions stay Processing. Close is idempotent.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	close(s.stop)
	for _, in := range s.store.interactions {
		if in.flight != nil && in.flight.timer != nil {
			in.flight.timer.Stop()
		}
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// SetAsync switches between synchronous and asynchronous interaction
// creation for the interactions created from now on.
func (s *Server) SetAsync(async bool) {
	s.knobMu.Lock()
	s.async = async
	s.knobMu.Unlock()
}

// SetLatency changes the latency knobs for requests received from now on.
func (s *Server) SetLatency(latency, perOutputToken, jitter time.Duration) {
	s.knobMu.Lock()
	s.latency, s.perTok, s.jitter = latency, perOutputToken, jitter
	s.knobMu.Unlock()
}

// SetFaults replaces the fault rates for requests received from now on. The
// random source is reseeded only when f.Seed differs from the current seed.
func (s *Server) SetFaults(f Faults) {
	s.knobMu.Lock()
	if f.Seed != s.faults.Seed {
		s.rng = rand.New(rand.NewPCG(f.Seed, 0x7468726561646d6c))
	}
	s.faults = f
	s.knobMu.Unlock()
}

// SetRateLimit changes the server-side rate limit (requests per second,
// 0 = off) and its burst (0 = max(1, ceil(rps))).
func (s *Server) SetRateLimit(rps float64, burst int) {
	s.knobMu.Lock()
	s.limiter = newLimiter(rps, burst)
	s.knobMu.Unlock()
}

func newLimiter(rps float64, burst int) *rate.Limiter {
	if rps <= 0 {
		return nil
	}
	if burst <= 0 {
		burst = max(1, int(rps+0.999999))
	}
	return rate.NewLimiter(rate.Limit(rps), burst)
}

// apiError is the JSON error body of every 4xx and 5xx answer.
type apiError struct {
	Valid   *bool    `json:"valid,omitempty"`
	Message string   `json:"message"`
	Errors  []string `json:"errors,omitempty"`
}

// httpError is an error that knows its status code.
type httpError struct {
	status int
	msg    string
	errs   []string
	// body, when set, is written as the JSON body instead of the usual
	// {"message","errors"} shape (e.g. a FastAPI-style {"detail": [...]}).
	body any
}

func (e *httpError) Error() string { return e.msg }

func errorf(status int, format string, args ...any) *httpError {
	return &httpError{status: status, msg: fmt.Sprintf(format, args...)}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	b, _ := encodeJSON(v)
	_, _ = w.Write(append(b, '\n'))
}

// encodeJSON is json.Marshal without HTML escaping: what is echoed back
// keeps a client's "<", ">" and "&" as sent (json.Marshal would rewrite
// them inside json.RawMessage fields too).
func encodeJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

func writeError(w http.ResponseWriter, err *httpError) {
	if err.body != nil {
		writeJSON(w, err.status, err.body)
		return
	}
	writeJSON(w, err.status, apiError{Message: err.msg, Errors: err.errs})
}
