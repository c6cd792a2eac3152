// Package workspace is a typed client for the Zylon Workspace API endpoints a
// batch runner needs: the /app/me preflight, threads, interactions (with
// their SSE stream), one-shot chat and chat/validate, and artifacts.
//
// Every call takes a context, sends the Bearer token and the x-org header,
// reads the answer through a size limit and returns either the decoded DTO or
// a typed error: *APIError for a non-2xx answer, *RequestError when no answer
// could be had, *StreamError for an error event inside a stream. IsRetryable,
// IsPermanent and RetryAfter classify them.
//
// Servers up to spec 2025-11 route threads and interactions under their
// project: WithRouteScheme chooses the routes (RoutesCurrent,
// RoutesProjectScoped, or RoutesAuto with CheckRoutes probing once), and a
// 404 of a route the server does not have matches ErrRouteMismatch rather
// than ErrNotFound.
package workspace

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/threadmill/threadmill/internal/secret"
)

// Defaults of the client's options.
const (
	// DefaultTimeout is the per-call timeout of every call except streams.
	DefaultTimeout = 2 * time.Minute
	// DefaultMaxBodyBytes is the largest default cap of a response body
	// (32 MiB), that of one artifact with its content; every other kind of
	// answer has a smaller one (see DefaultBodyLimits).
	DefaultMaxBodyBytes = 32 << 20
	// DefaultStreamIdleTimeout ends a stream that sends nothing, not even a
	// ping, for this long.
	DefaultStreamIdleTimeout = 2 * time.Minute
	// DefaultUserAgent is sent when WithUserAgent is not used.
	DefaultUserAgent = "threadmill-workspace/1"
	// DefaultPollMin and DefaultPollMax bound the backoff between GETs when
	// WaitInteraction polls.
	DefaultPollMin = 200 * time.Millisecond
	DefaultPollMax = 5 * time.Second
	// DefaultLagGrace is how long WaitInteraction takes a 404 for replica
	// lag (see WithLagGrace).
	DefaultLagGrace = 15 * time.Second
)

// apiPrefix is the path prefix of the Workspace API.
const apiPrefix = "/api/v1"

// Client calls the Workspace API. It is safe for concurrent use.
type Client struct {
	base        *url.URL // scheme://host[/prefix]/api/v1, no trailing slash
	token       string
	org         string
	http        *http.Client
	userAgent   string
	timeout     time.Duration
	maxBody     int64 // ceiling over bodyLimits; 0: none
	bodyLimits  BodyLimits
	limits      Limits
	idleTimeout time.Duration
	pollMin     time.Duration
	pollMax     time.Duration
	lagGrace    time.Duration
	logger      *slog.Logger
	now         func() time.Time
	scheme      RouteScheme // WithRouteScheme
	project     string      // WithProject
	routes      *routeState // the scheme in use, shared with copies
	errs        []error     // option errors, reported by New
}

// Option configures a Client.
type Option func(*Client)

// WithToken sets the API token, sent as "Authorization: Bearer <token>".
// The token never appears in errors, logs or the client's String form.
func WithToken(token string) Option { return func(c *Client) { c.token = token } }

// WithOrg sets the organisation slug or UUID sent as the x-org header, which
// every /api/v1/app call requires.
func WithOrg(org string) Option { return func(c *Client) { c.org = org } }

// WithHTTPClient sets the HTTP client, e.g. one whose transport rate-limits
// or traces every request. The default client has its own transport (64 idle
// connections per host) and does not follow redirects (a redirect is an
// *APIError); a client passed here is used as is. Do not set its Timeout: it
// would cut streams; use WithTimeout.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) {
		if hc == nil {
			c.errs = append(c.errs, errors.New("WithHTTPClient: nil *http.Client"))
			return
		}
		c.http = hc
	}
}

// WithUserAgent sets the User-Agent header (default DefaultUserAgent).
func WithUserAgent(ua string) Option { return func(c *Client) { c.userAgent = ua } }

// WithTimeout sets the per-call timeout of every call except streams
// (default DefaultTimeout; 0 disables it, leaving only the caller's context).
// A call that exceeds it fails with an error matching ErrTimeout.
func WithTimeout(d time.Duration) Option {
	return func(c *Client) {
		if d < 0 {
			c.errs = append(c.errs, fmt.Errorf("WithTimeout: negative duration %s", d))
			return
		}
		c.timeout = d
	}
}

// WithMaxBodyBytes caps the decoded size of every response body at n, on
// top of the per-kind limits (WithBodyLimits): a kind whose limit is larger
// is lowered to n. A larger body fails with an error matching
// ErrBodyTooLarge that names the endpoint.
func WithMaxBodyBytes(n int64) Option {
	return func(c *Client) {
		if n <= 0 {
			c.errs = append(c.errs, fmt.Errorf("WithMaxBodyBytes: %d is not positive", n))
			return
		}
		c.maxBody = n
	}
}

// WithBodyLimits sets the decoded size limit of a 2xx answer for each kind
// of call (default DefaultBodyLimits; zero fields keep their defaults).
// Use it to raise one kind, e.g. Page for pages of very long interactions.
func WithBodyLimits(l BodyLimits) Option {
	return func(c *Client) {
		if err := l.validate(); err != nil {
			c.errs = append(c.errs, fmt.Errorf("WithBodyLimits: %w", err))
			return
		}
		c.bodyLimits = l.withDefaults()
	}
}

// WithStreamLimits sets the line and total size limits of interaction
// streams (default DefaultLimits; zero fields keep their defaults).
func WithStreamLimits(l Limits) Option {
	return func(c *Client) {
		if err := l.validate(); err != nil {
			c.errs = append(c.errs, fmt.Errorf("WithStreamLimits: %w", err))
			return
		}
		c.limits = l.withDefaults()
	}
}

// WithStreamIdleTimeout ends a stream that sends nothing for d (default
// DefaultStreamIdleTimeout; 0 disables it). The error matches ErrTimeout.
func WithStreamIdleTimeout(d time.Duration) Option {
	return func(c *Client) {
		if d < 0 {
			c.errs = append(c.errs, fmt.Errorf("WithStreamIdleTimeout: negative duration %s", d))
			return
		}
		c.idleTimeout = d
	}
}

// WithPollInterval bounds the exponential backoff between GETs when
// WaitInteraction polls (defaults DefaultPollMin and DefaultPollMax).
func WithPollInterval(minDelay, maxDelay time.Duration) Option {
	return func(c *Client) {
		if minDelay <= 0 || maxDelay < minDelay {
			c.errs = append(c.errs, fmt.Errorf("WithPollInterval: want 0 < min <= max, got min %s max %s", minDelay, maxDelay))
			return
		}
		c.pollMin, c.pollMax = minDelay, maxDelay
	}
}

// WithLogger sets the logger for debug records of calls and stream
// fallbacks (default: discard). Records never carry the token.
func WithLogger(l *slog.Logger) Option {
	return func(c *Client) {
		if l != nil {
			c.logger = l
		}
	}
}

// New returns a client for the Workspace API at baseURL, e.g.
// "https://zylon.example.com" or "http://127.0.0.1:8080". The /api/v1 prefix
// is added unless baseURL already ends with it; a path prefix in front of it
// (a reverse proxy's) is kept.
func New(baseURL string, opts ...Option) (*Client, error) {
	u, err := parseBase(baseURL)
	if err != nil {
		return nil, err
	}
	c := &Client{
		base:        u,
		userAgent:   DefaultUserAgent,
		timeout:     DefaultTimeout,
		bodyLimits:  DefaultBodyLimits(),
		limits:      DefaultLimits(),
		idleTimeout: DefaultStreamIdleTimeout,
		pollMin:     DefaultPollMin,
		pollMax:     DefaultPollMax,
		lagGrace:    DefaultLagGrace,
		logger:      slog.New(slog.DiscardHandler),
		now:         time.Now,
		scheme:      RoutesCurrent,
	}
	for _, o := range opts {
		o(c)
	}
	c.routes = newRouteState(c.scheme)
	if strings.ContainsAny(c.token, "\r\n") {
		c.errs = append(c.errs, errors.New("WithToken: the token contains a line break"))
	}
	if strings.ContainsAny(c.org, "\r\n") {
		c.errs = append(c.errs, errors.New("WithOrg: the org contains a line break"))
	}
	if strings.ContainsAny(c.userAgent, "\r\n") {
		c.errs = append(c.errs, errors.New("WithUserAgent: the user agent contains a line break"))
	}
	if len(c.errs) > 0 {
		return nil, fmt.Errorf("workspace: new client: %w", errors.Join(c.errs...))
	}
	if c.http == nil {
		// A batch runner talks to one host from many goroutines: keep
		// enough idle connections to reuse them (net/http keeps 2 per host
		// by default). A worker runs up to one request per slot at once,
		// and its slots may exceed 64: keep as many per host as in all.
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConns = 256
		tr.MaxIdleConnsPerHost = 256
		c.http = &http.Client{
			Transport: tr,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		}
	}
	return c, nil
}

func parseBase(raw string) (*url.URL, error) {
	s := strings.TrimSpace(raw)
	if s == "" {
		return nil, errors.New("workspace: new client: empty base URL")
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("workspace: new client: base URL %q: %w", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("workspace: new client: base URL %q: scheme must be http or https", raw)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("workspace: new client: base URL %q: no host", raw)
	}
	if u.User != nil {
		return nil, fmt.Errorf("workspace: new client: base URL %q: credentials in the URL are not supported; use WithToken", u.Redacted())
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("workspace: new client: base URL %q: no query or fragment allowed", raw)
	}
	p := strings.TrimRight(u.Path, "/")
	if !strings.HasSuffix(p, apiPrefix) {
		p += apiPrefix
	}
	u.Path, u.RawPath = p, ""
	return u, nil
}

// CloseIdleConnections closes the idle keep-alive connections of the
// client's HTTP transport; call it when done with the client.
func (c *Client) CloseIdleConnections() { c.http.CloseIdleConnections() }

// BaseURL returns the API root the client calls, ending in /api/v1.
func (c *Client) BaseURL() string { return c.base.String() }

// String describes the client without its token.
func (c *Client) String() string {
	tok := "none"
	if c.token != "" {
		tok = secret.Mask
	}
	return fmt.Sprintf("workspace.Client{base: %s, org: %q, token: %s}", c.base, c.org, tok)
}

// GoString is String, so %#v never prints the token either.
func (c *Client) GoString() string { return c.String() }

// call describes one request.
type call struct {
	method string
	path   string     // below /api/v1, already escaped, e.g. "/app/thread/t1"
	query  url.Values // may be nil
	body   any        // JSON-encoded when not nil
	// raw is sent as the body, with rawType as its Content-Type, when
	// body is nil (a multipart upload).
	raw     []byte
	rawType string
	out     any // JSON-decoded from a 2xx body when not nil
	// emptyOK lets a 2xx answer without a body leave out untouched.
	emptyOK bool
	// kind picks the body size limit (default kindSmall).
	kind bodyKind
}

// callTimeoutKey carries a per-call timeout override in a context.
type callTimeoutKey struct{}

// WithCallTimeout returns a context whose calls use timeout d instead of the
// client's default (WithTimeout); 0 disables the per-call timeout for them.
// Use it for a call known to take long, such as a synchronous
// CreateInteraction.
func WithCallTimeout(ctx context.Context, d time.Duration) context.Context {
	return context.WithValue(ctx, callTimeoutKey{}, max(d, 0))
}

// do sends c and decodes the answer. It applies the per-call timeout.
func (c *Client) do(ctx context.Context, k call) error {
	fullPath := c.base.Path + k.path
	if err := ctx.Err(); err != nil {
		return &RequestError{Method: k.method, Path: fullPath, Err: context.Cause(ctx)}
	}
	timeout := c.timeout
	if d, ok := ctx.Value(callTimeoutKey{}).(time.Duration); ok {
		timeout = d
	}
	callCtx := ctx
	if timeout > 0 {
		var cancel context.CancelFunc
		callCtx, cancel = context.WithTimeoutCause(ctx, timeout,
			fmt.Errorf("%w after %s", ErrTimeout, timeout))
		defer cancel()
	}
	start := c.now()
	resp, err := c.send(callCtx, k, "application/json")
	if err != nil {
		return c.transportError(ctx, callCtx, k.method, fullPath, err)
	}
	defer resp.Body.Close()
	body, err := c.readBody(ctx, callCtx, resp, k.kind, k.method, fullPath)
	c.logger.LogAttrs(ctx, slog.LevelDebug, "workspace call",
		slog.String("method", k.method), slog.String("path", fullPath),
		slog.Int("status", resp.StatusCode), slog.Int("bytes", len(body)),
		slog.Duration("elapsed", c.now().Sub(start)))
	if err != nil {
		return err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return c.apiError(k.method, fullPath, resp, body)
	}
	if k.out == nil {
		return nil
	}
	return decodeJSON(k.method, fullPath, resp, body, k.out, k.emptyOK)
}

// apiError is newAPIError with a 404 of an unknown route marked.
func (c *Client) apiError(method, path string, resp *http.Response, body []byte) *APIError {
	e := newAPIError(method, path, resp.StatusCode, resp.Header, body, c.now(), c.token)
	c.markRouteMismatch(e, resp.Header)
	return e
}

// send builds and sends the request of k.
func (c *Client) send(ctx context.Context, k call, accept string) (*http.Response, error) {
	u := *c.base
	u.Path = c.base.Path + k.path
	if pathUnescaped, err := url.PathUnescape(u.Path); err == nil {
		u.RawPath = u.Path
		u.Path = pathUnescaped
	}
	if len(k.query) > 0 {
		u.RawQuery = k.query.Encode()
	}
	var body io.Reader
	if k.body != nil {
		b, err := json.Marshal(k.body)
		if err != nil {
			return nil, fmt.Errorf("encode request body: %w", err)
		}
		body = bytes.NewReader(b)
	} else if k.raw != nil {
		body = bytes.NewReader(k.raw)
	}
	req, err := http.NewRequestWithContext(ctx, k.method, u.String(), body)
	if err != nil {
		return nil, err
	}
	switch {
	case k.body != nil:
		req.Header.Set("Content-Type", "application/json")
	case k.raw != nil:
		req.Header.Set("Content-Type", k.rawType)
	}
	req.Header.Set("Accept", accept)
	req.Header.Set("User-Agent", c.userAgent)
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if c.org != "" {
		req.Header.Set("x-org", c.org)
	}
	return c.http.Do(req)
}

// transportError wraps a failure to get or read an answer, telling the
// caller's cancellation apart from the client's own timeout.
func (c *Client) transportError(ctx, callCtx context.Context, method, path string, err error) error {
	switch {
	case ctx.Err() != nil:
		// The caller's context ended: report its cause, not retryable.
		return &RequestError{Method: method, Path: path, Err: context.Cause(ctx)}
	case callCtx.Err() != nil:
		return &RequestError{Method: method, Path: path, Err: context.Cause(callCtx)}
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // the RequestError already names the endpoint
	}
	return &RequestError{Method: method, Path: path, Err: err}
}

// readBody reads the body through the size limit of its kind (a smaller
// one for error answers, whose text is only kept truncated). The limit
// counts decoded bytes: a gzip answer is decoded first, by the transport or
// here, so a small compressed body cannot expand past it.
func (c *Client) readBody(ctx, callCtx context.Context, resp *http.Response, kind bodyKind, method, path string) ([]byte, error) {
	limit := c.bodyLimit(kind)
	isErr := resp.StatusCode < 200 || resp.StatusCode > 299
	if isErr {
		limit = min(limit, maxErrorRead)
	}
	r, enc, err := decodedBody(resp.Body, resp.Header, resp.Uncompressed)
	if err != nil {
		if errors.Is(err, errUnsupportedEncoding) {
			if isErr {
				return nil, nil // the status says enough
			}
			return nil, &RequestError{Method: method, Path: path, Err: fmt.Errorf("%d response: %w", resp.StatusCode, err)}
		}
		return nil, c.transportError(ctx, callCtx, method, path, fmt.Errorf("read %d response body: %w", resp.StatusCode, err))
	}
	hint := resp.ContentLength // of the bytes on the wire: only a hint when not encoded
	if enc != "" {
		hint = -1
	}
	if !isErr && hint > limit {
		return nil, &RequestError{Method: method, Path: path,
			Err: limitErrorf("%d response body exceeds the %s limit (Content-Length %d)", resp.StatusCode, byteSize(limit), hint)}
	}
	body, over, err := readLimited(r, limit, hint, isErr)
	if err != nil {
		return nil, c.transportError(ctx, callCtx, method, path, fmt.Errorf("read %d response body%s: %w", resp.StatusCode, encNote(enc), err))
	}
	if over {
		if isErr {
			return body, nil // enough for the message; the rest is dropped
		}
		return nil, &RequestError{Method: method, Path: path,
			Err: limitErrorf("%d response body exceeds the %s limit%s", resp.StatusCode, byteSize(limit), encNote(enc))}
	}
	return body, nil
}

// encNote says in an error which content encoding was undone.
func encNote(enc string) string {
	if enc == "" {
		return ""
	}
	return " (decoded from " + enc + ")"
}

// errUnsupportedEncoding is the cause of a failure to decode a response
// whose Content-Encoding the client does not know.
var errUnsupportedEncoding = errors.New("unsupported content encoding")

// decodedBody returns a response body as the server meant it, and the
// content encoding it undid ("" for none); uncompressed is the response's
// Uncompressed field. Go's transport decodes gzip when
// it asked for it; a gzip answer it left alone (a server compressing
// unasked, a transport that does not ask) is decoded here, so that limits
// always count decoded bytes. Other encodings fail with
// errUnsupportedEncoding.
func decodedBody(body io.Reader, h http.Header, uncompressed bool) (io.Reader, string, error) {
	if uncompressed {
		return body, "gzip", nil
	}
	switch ce := strings.ToLower(strings.TrimSpace(h.Get("Content-Encoding"))); ce {
	case "", "identity":
		return body, "", nil
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(body)
		switch {
		case err == io.EOF: // an empty body
			return strings.NewReader(""), ce, nil
		case err != nil:
			return nil, ce, fmt.Errorf("gzip content encoding: %w", err)
		}
		return zr, ce, nil
	default:
		return nil, ce, fmt.Errorf("%w %q", errUnsupportedEncoding, ce)
	}
}

// readLimited reads r to its end or to limit+1 bytes, whichever comes
// first; over reports the latter. When the answer announced a length within
// the limit (hint), it reads into one buffer of that size. Otherwise it
// reads into pieces of growing size, never copying them until the end,
// where a body of several pieces is joined: a body over the limit thus
// costs about the limit in allocations, and one under it about twice its
// size, never the doubling copies of io.ReadAll. A body over the limit is
// dropped, unless keep asks for its first limit bytes.
func readLimited(r io.Reader, limit, hint int64, keep bool) (body []byte, over bool, err error) {
	if hint >= 0 && hint <= limit {
		// One more byte than announced, to see the end without growing.
		return readPieces(r, limit, hint+1, 0, keep)
	}
	return readPieces(r, limit, 4<<10, 1<<20, keep)
}

// readPieces is readLimited with a first piece of first bytes, each next
// piece twice the last up to maxPiece (0: a single piece, grown by
// doubling).
func readPieces(r io.Reader, limit, first, maxPiece int64, keep bool) ([]byte, bool, error) {
	var (
		pieces [][]byte
		total  int64
		cur    = make([]byte, 0, min(first, limit+1))
	)
	done := func() []byte {
		if len(pieces) == 0 {
			return cur
		}
		out := make([]byte, 0, total)
		for _, p := range pieces {
			out = append(out, p...)
		}
		return append(out, cur...)
	}
	for {
		if len(cur) == cap(cur) {
			room := limit + 1 - total // what may still be read, one byte over included
			if maxPiece == 0 {
				grown := make([]byte, len(cur), min(2*int64(cap(cur)), int64(len(cur))+room))
				copy(grown, cur)
				cur = grown
			} else {
				pieces = append(pieces, cur)
				cur = make([]byte, 0, min(2*int64(cap(cur)), maxPiece, room))
			}
		}
		n, err := r.Read(cur[len(cur):cap(cur)])
		cur = cur[:len(cur)+n]
		total += int64(n)
		switch {
		case total > limit && keep:
			return done()[:limit], true, nil
		case total > limit:
			return nil, true, nil
		case err == io.EOF:
			return done(), false, nil
		case err != nil:
			return nil, false, err
		}
	}
}

// decodeJSON decodes a 2xx body into out, with an error naming the endpoint,
// the content type and the start of the body when it is not JSON.
func decodeJSON(method, path string, resp *http.Response, body []byte, out any, emptyOK bool) error {
	ct := resp.Header.Get("Content-Type")
	if len(bytes.TrimSpace(body)) == 0 {
		if emptyOK {
			return nil
		}
		return &RequestError{Method: method, Path: path,
			Err: fmt.Errorf("%d response has an empty body, want JSON", resp.StatusCode)}
	}
	mt, _, _ := mime.ParseMediaType(ct)
	if strings.Contains(mt, "html") {
		return &RequestError{Method: method, Path: path,
			Err: fmt.Errorf("%d response is not JSON (content type %q): %s", resp.StatusCode, ct, snippet(body))}
	}
	if err := json.Unmarshal(body, out); err != nil {
		if ct == "" {
			ct = "none"
		}
		return &RequestError{Method: method, Path: path,
			Err: fmt.Errorf("%d response is not valid JSON (content type %q): %w; body starts %s", resp.StatusCode, ct, err, snippet(body))}
	}
	return nil
}

func byteSize(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

// seg escapes one path segment and rejects an empty id.
func seg(what, id string) (string, error) {
	if strings.TrimSpace(id) == "" {
		return "", fmt.Errorf("workspace: empty %s", what)
	}
	return url.PathEscape(id), nil
}
