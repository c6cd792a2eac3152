// Package webui serves threadmill's web pages: the runs (from a results root
// and, with Redis, the runs in flight), one run with its report, items and
// files, and the schedules of a pipelines directory.
//
// Pages are rendered on the server with html/template; the stylesheet and a
// small script (live progress over server-sent events) are embedded in the
// binary. Every page works without JavaScript; only the live updates need
// it. Nothing outside the results root is ever read for a page or served as
// a file: files are opened through an os.Root, and path segments that could
// climb out (dot-dot, encoded or not, slashes, leading dots) are refused.
//
// Actions (cancel a run, retry its failed items) are off unless
// Options.Token is set; a person then logs in with that token, and each
// action is a POST that must carry the session's CSRF token and pass Go's
// cross-origin protection.
package webui

import (
	"cmp"
	"context"
	"crypto/rand"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/threadmill/threadmill/pipelines"
	"github.com/threadmill/threadmill/runstore"
	"github.com/threadmill/threadmill/worker"
)

//go:embed templates/*.html static/*
var assets embed.FS

// TokenEnv is the environment variable whose value enables the actions
// (see Options.Token).
const TokenEnv = "THREADMILL_UI_TOKEN"

// MinTokenLength is the shortest Options.Token accepted: a token people
// could guess is no protection.
const MinTokenLength = 16

// Options configure a Server. The zero value serves ./threadmill-results
// without Redis, schedules or actions.
type Options struct {
	// Root is the results root whose runs are shown. Default
	// pipelines.DefaultOutputDir.
	Root string
	// Store is the run store on Redis: runs in flight, their live
	// progress, and the actions. Nil: the results root only.
	Store *runstore.Store
	// Queue is the asynq queue the workers serve, where a retried run's
	// start task is enqueued. Default worker.DefaultQueue.
	Queue string
	// PipelinesDir is the directory whose scheduled pipelines the
	// schedules page lists, read with Load. Empty: no schedules page
	// content.
	PipelinesDir string
	// Load loads a pipeline file. Default pipelines.Load with the
	// process environment.
	Load func(path string) (*pipelines.Pipeline, error)
	// Token enables the actions: a person logs in with it; at least
	// MinTokenLength characters. Empty (the default): actions are off and
	// every POST is refused.
	Token string
	// Prefix is the path the UI is mounted under, such as "/ui"; requests
	// arrive with it. Default "" (the root).
	Prefix string
	// Interval is how often live progress is sent to open pages. Default 1s.
	Interval time.Duration
	// ItemsPerPage is the number of items in a run page's table. Default 100.
	ItemsPerPage int
	// Now is the clock for the durations of running runs and the next fire
	// times. Default time.Now.
	Now func() time.Time
	// Logger receives one line per action and per failed request. Default:
	// discard.
	Logger *slog.Logger
}

// withDefaults fills in the defaults the doc comments name.
func (o Options) withDefaults() Options {
	o.Root = cmp.Or(o.Root, pipelines.DefaultOutputDir)
	o.Queue = cmp.Or(o.Queue, worker.DefaultQueue)
	o.Prefix = strings.TrimRight(o.Prefix, "/")
	o.Interval = cmp.Or(o.Interval, time.Second)
	o.ItemsPerPage = cmp.Or(o.ItemsPerPage, 100)
	if o.Load == nil {
		o.Load = func(path string) (*pipelines.Pipeline, error) { return pipelines.Load(path, os.LookupEnv) }
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// validate names the field that is wrong.
func (o *Options) validate() error {
	if o.Prefix != "" && !strings.HasPrefix(o.Prefix, "/") {
		return fmt.Errorf("webui: Prefix %q must start with /", o.Prefix)
	}
	if o.Interval < 0 {
		return fmt.Errorf("webui: Interval %s must not be negative", o.Interval)
	}
	if o.Token != "" && len(o.Token) < MinTokenLength {
		return fmt.Errorf("webui: Token (%s) must be at least %d characters, got %d: use a long random value, such as the output of openssl rand -hex 16", TokenEnv, MinTokenLength, len(o.Token))
	}
	if o.ItemsPerPage < 1 || o.ItemsPerPage > 10000 {
		return fmt.Errorf("webui: ItemsPerPage %d must be in 1..10000", o.ItemsPerPage)
	}
	return nil
}

// Server is the web UI: an http.Handler.
type Server struct {
	opts    Options
	handler http.Handler
	pages   map[string]*template.Template
	key     []byte // signs session cookies and CSRF tokens; new per Server
	// logins limits login attempts, so that the token cannot be guessed
	// by trying: 10 at once, then one every 2 seconds.
	logins *rate.Limiter

	closeOnce sync.Once
	closed    chan struct{}
}

var _ http.Handler = (*Server)(nil)

// New returns a Server for opts.
func New(opts Options) (*Server, error) {
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	s := &Server{opts: opts, key: make([]byte, 32), closed: make(chan struct{}), logins: rate.NewLimiter(rate.Every(2*time.Second), 10)}
	if _, err := rand.Read(s.key); err != nil {
		return nil, fmt.Errorf("webui: session key: %w", err)
	}
	pages, err := parsePages(opts.Prefix)
	if err != nil {
		return nil, err
	}
	s.pages = pages
	static, err := fs.Sub(assets, "static")
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.runsPage)
	mux.HandleFunc("GET /runs/{pipeline}/{run}", s.runPage)
	mux.HandleFunc("GET /runs/{pipeline}/{run}/items/{n}", s.itemPage)
	mux.HandleFunc("GET /runs/{pipeline}/{run}/steps/{step}/items/{index}", s.stepItemPage)
	mux.HandleFunc("GET /runs/{pipeline}/{run}/files/{file}", s.filePage)
	mux.HandleFunc("GET /schedules", s.schedulesPage)
	mux.HandleFunc("GET /events", s.events)
	mux.Handle("GET /static/", http.StripPrefix("/static/", staticHandler(static)))
	mux.HandleFunc("POST /login", s.login)
	mux.HandleFunc("POST /logout", s.logout)
	mux.HandleFunc("POST /runs/{pipeline}/{run}/cancel", s.cancel)
	mux.HandleFunc("POST /runs/{pipeline}/{run}/retry", s.retry)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, http.StatusNotFound, "No page here.")
	})
	// Cross-origin POSTs are refused before any handler sees them (the
	// browser's Sec-Fetch-Site or Origin says where the form came from).
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, http.StatusForbidden, "Refused: a cross-origin request (forms must be sent from this site).")
	}))
	var h http.Handler = cop.Handler(mux)
	if opts.Prefix != "" {
		h = http.StripPrefix(opts.Prefix, h)
	}
	s.handler = securityHeaders(h)
	return s, nil
}

// ServeHTTP serves the UI.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// Close ends the live-update streams of open pages, so that an
// http.Server's Shutdown does not wait for them. The pages themselves are
// still served.
func (s *Server) Close() { s.closeOnce.Do(func() { close(s.closed) }) }

// ActionsEnabled reports whether the actions are on (Options.Token set).
func (s *Server) ActionsEnabled() bool { return s.opts.Token != "" }

// securityHeaders sets the headers every answer carries: no inline script
// or style, no framing, no content sniffing, no referrer to other sites.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("X-Frame-Options", "DENY")
		next.ServeHTTP(w, r)
	})
}

// staticHandler serves the embedded assets with a short cache lifetime.
func staticHandler(static fs.FS) http.Handler {
	fsrv := http.FileServerFS(static)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "" || strings.HasSuffix(r.URL.Path, "/") {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Cache-Control", "public, max-age=300")
		fsrv.ServeHTTP(w, r)
	})
}

// errNotFound is a run, item or file that is not there.
var errNotFound = errors.New("not found")

// checkSegment refuses a path segment that could name something outside
// its directory: empty, ".", "..", hidden (leading dot), or holding a
// slash, backslash or NUL. Segments arrive decoded, so "%2e%2e" and "%2f"
// are caught here too.
func checkSegment(s string) error {
	if s == "" || len(s) > 255 || strings.HasPrefix(s, ".") || strings.ContainsAny(s, "/\\\x00") {
		return fmt.Errorf("%q is not a valid name", s)
	}
	return nil
}

// waitOrClosed waits for the next tick, the end of ctx or Close; it
// reports whether to go on.
func (s *Server) waitOrClosed(ctx context.Context, t *time.Ticker) bool {
	select {
	case <-ctx.Done():
		return false
	case <-s.closed:
		return false
	case <-t.C:
		return true
	}
}
