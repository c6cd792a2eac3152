// Package notify calls the webhooks of a pipeline's notify list when a run
// finishes: a JSON POST describing the run, with a text field that Slack
// and Microsoft Teams incoming webhooks display as the message, signed with
// HMAC-SHA256 when a secret is configured, and retried with backoff. A
// webhook that cannot be reached is logged; it never fails the run.
package notify

import (
	"bytes"
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/threadmill/threadmill/internal/numfmt"
	"github.com/threadmill/threadmill/pipelines"
	"github.com/threadmill/threadmill/workspace"
)

// Headers of a delivery.
const (
	// SignatureHeader carries "sha256=" and the hex HMAC-SHA256, keyed
	// with the secret, of TimestampHeader's value, a ".", and the body.
	SignatureHeader = "X-Threadmill-Signature"
	// TimestampHeader is the Unix time the delivery was signed at; a
	// receiver refuses old ones to stop replays.
	TimestampHeader = "X-Threadmill-Timestamp"
	// DeliveryHeader is "<run id>/<webhook index>", the same on every
	// retry: a receiver drops deliveries it has seen.
	DeliveryHeader = "X-Threadmill-Delivery"
)

// Payload is the JSON body of a delivery.
type Payload struct {
	// Text is a one-paragraph summary, what chat webhooks display.
	Text     string `json:"text"`
	RunID    string `json:"run_id"`
	Pipeline string `json:"pipeline"`
	// Status is succeeded, failed, stopped or canceled; error for a run
	// that could not start or finish, which Error explains (it has no
	// result files).
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
	// Total and Counts are the items, by state; Reused those that took
	// an earlier run's output.
	Total  int            `json:"total"`
	Counts map[string]int `json:"counts"`
	Reused int            `json:"reused,omitempty"`
	// Usage is the run's tokens.
	Usage       workspace.Usage `json:"usage"`
	TotalTokens int64           `json:"total_tokens"`
	FireTime    *time.Time      `json:"fire_time,omitempty"`
	WindowStart *time.Time      `json:"window_start,omitempty"`
	WindowEnd   *time.Time      `json:"window_end,omitempty"`
	StartedAt   time.Time       `json:"started_at"`
	FinishedAt  time.Time       `json:"finished_at"`
	// ResultDir and ReportPath are where the result files are, on the
	// machine that wrote them.
	ResultDir  string `json:"result_dir"`
	ReportPath string `json:"report_path"`
	// PublishedArtifactID is the artifact report.md was published as
	// (output.publish), with its name.
	PublishedArtifactID string `json:"published_artifact_id,omitempty"`
	PublishedName       string `json:"published_name,omitempty"`
}

// Summary fills p.Text from the other fields.
func (p *Payload) Summary() {
	var b strings.Builder
	if p.Error != "" {
		fmt.Fprintf(&b, "threadmill: run %s of %s could not finish (%s): %s", p.RunID, p.Pipeline, p.Status, p.Error)
		p.Text = b.String()
		return
	}
	fmt.Fprintf(&b, "threadmill: run %s of %s %s: %s items", p.RunID, p.Pipeline, p.Status, numfmt.Thousands(int64(p.Total)))
	var parts []string
	for _, st := range []string{"succeeded", "failed", "skipped", "canceled"} {
		if n := p.Counts[st]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s %s", numfmt.Thousands(int64(n)), st))
		}
	}
	if p.Reused > 0 {
		parts = append(parts, fmt.Sprintf("%s reused", numfmt.Thousands(int64(p.Reused))))
	}
	if len(parts) > 0 {
		fmt.Fprintf(&b, " (%s)", strings.Join(parts, ", "))
	}
	fmt.Fprintf(&b, ", %s tokens.", numfmt.Thousands(p.TotalTokens))
	if p.WindowStart != nil && p.WindowEnd != nil {
		fmt.Fprintf(&b, " Window %s to %s.", p.WindowStart.UTC().Format(time.RFC3339), p.WindowEnd.UTC().Format(time.RFC3339))
	}
	if p.PublishedName != "" {
		fmt.Fprintf(&b, " Report published as %q (%s).", p.PublishedName, p.PublishedArtifactID)
	}
	if p.ReportPath != "" {
		fmt.Fprintf(&b, " Report: %s", p.ReportPath)
	}
	p.Text = b.String()
}

// Sender delivers payloads. The zero value is not usable: use New.
type Sender struct {
	// Client sends the requests. Default: a client with no overall
	// timeout (Timeout bounds each attempt).
	Client *http.Client
	// Attempts is the tries per webhook, the first included. Default 4.
	Attempts int
	// Backoff is the wait before the second try, doubled before each next
	// one (with jitter), at most MaxBackoff. Defaults 1s and 30s. A 429 or
	// 503 with Retry-After waits that long instead (at most MaxBackoff).
	Backoff, MaxBackoff time.Duration
	// Timeout bounds one attempt. Default 10s.
	Timeout time.Duration
	// LookupEnv reads the secrets secret_env names. Default os.LookupEnv.
	LookupEnv func(string) (string, bool)
	// Now is the clock of the timestamp header. Default time.Now.
	Now func() time.Time
	// Logger receives one line per webhook delivered or given up on; the
	// webhook is named by its index and host, never by its URL, which
	// often holds a credential.
	Logger *slog.Logger
}

// New returns a Sender with the defaults.
func New(logger *slog.Logger) *Sender {
	return (&Sender{Logger: logger}).withDefaults()
}

func (s *Sender) withDefaults() *Sender {
	c := *s
	if c.Client == nil {
		c.Client = &http.Client{}
	}
	c.Attempts = cmp.Or(c.Attempts, 4)
	c.Backoff = cmp.Or(c.Backoff, time.Second)
	c.MaxBackoff = cmp.Or(c.MaxBackoff, 30*time.Second)
	c.Timeout = cmp.Or(c.Timeout, 10*time.Second)
	if c.LookupEnv == nil {
		c.LookupEnv = os.LookupEnv
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return &c
}

// Result is the outcome of one webhook.
type Result struct {
	// Index is the webhook's position in the notify list.
	Index int
	// Attempts is the requests sent (0: not called for this status, or
	// not sent because its secret is missing).
	Attempts int
	// Err is why it was not delivered; nil when it was (or was not due).
	Err error
}

// Send calls every webhook of hooks that wants p.Status, one after the
// other, each retried on network errors, 408, 429 and 5xx answers, and
// returns their outcomes. Nothing it meets is returned as an error: the
// outcomes are logged.
func (s *Sender) Send(ctx context.Context, hooks []pipelines.Notify, p Payload) []Result {
	s = s.withDefaults()
	if p.Text == "" {
		p.Summary()
	}
	body, err := json.Marshal(p)
	out := make([]Result, len(hooks))
	for i, h := range hooks {
		out[i].Index = i
		if !h.Wants(p.Status) {
			continue
		}
		log := s.Logger.With("webhook", fmt.Sprintf("notify[%d] (%s)", i, host(h.Webhook)), "run", p.RunID)
		if err != nil {
			out[i].Err = fmt.Errorf("notify: encode: %w", err)
			log.Error("webhook not called", "error", out[i].Err)
			continue
		}
		var secret string
		if h.SecretEnv != "" {
			v, ok := s.LookupEnv(h.SecretEnv)
			if !ok || v == "" {
				out[i].Err = fmt.Errorf("notify[%d]: secret_env %s is not set in the worker's environment; not sent unsigned", i, h.SecretEnv)
				log.Error("webhook not called", "error", out[i].Err)
				continue
			}
			secret = v
		}
		out[i].Attempts, out[i].Err = s.deliver(ctx, h.Webhook, body, secret, fmt.Sprintf("%s/%d", p.RunID, i))
		if out[i].Err != nil {
			log.Warn("webhook not delivered", "attempts", out[i].Attempts, "error", out[i].Err)
		} else {
			log.Info("webhook delivered", "attempts", out[i].Attempts)
		}
	}
	return out
}

// deliver POSTs body to u until it is accepted (2xx), refused for good
// (another 4xx) or the attempts are used up.
func (s *Sender) deliver(ctx context.Context, u string, body []byte, secret, delivery string) (int, error) {
	var last error
	wait := s.Backoff
	for attempt := 1; ; attempt++ {
		retry, after, err := s.post(ctx, u, body, secret, delivery)
		if err == nil {
			return attempt, nil
		}
		last = err
		if !retry || attempt >= s.Attempts || ctx.Err() != nil {
			return attempt, last
		}
		d := wait/2 + rand.N(wait/2+1)
		if after > 0 {
			d = after
		}
		t := time.NewTimer(min(d, s.MaxBackoff))
		select {
		case <-ctx.Done():
			t.Stop()
			return attempt, fmt.Errorf("%w (then: %w)", last, context.Cause(ctx))
		case <-t.C:
		}
		wait = min(wait*2, s.MaxBackoff)
	}
}

// post sends one attempt; retry says whether another may succeed, after is
// the wait a 429 or 503 asked for.
func (s *Sender) post(ctx context.Context, u string, body []byte, secret, delivery string) (retry bool, after time.Duration, err error) {
	actx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return false, 0, fmt.Errorf("bad webhook URL: %w", redact(err))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "threadmill-notify")
	req.Header.Set(DeliveryHeader, delivery)
	if secret != "" {
		ts := strconv.FormatInt(s.Now().Unix(), 10)
		req.Header.Set(TimestampHeader, ts)
		req.Header.Set(SignatureHeader, Sign([]byte(secret), ts, body))
	}
	resp, err := s.Client.Do(req)
	if err != nil {
		return true, 0, redact(err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch code := resp.StatusCode; {
	case code >= 200 && code < 300:
		return false, 0, nil
	case code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable:
		secs, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
		return true, time.Duration(secs) * time.Second, fmt.Errorf("answered %d", code)
	case code == http.StatusRequestTimeout || code >= 500:
		return true, 0, fmt.Errorf("answered %d", code)
	default:
		return false, 0, fmt.Errorf("answered %d (not retried)", code)
	}
}

// Sign returns the signature header value of a delivery: "sha256=" and
// the hex HMAC-SHA256, keyed with secret, of timestamp, ".", and body.
func Sign(secret []byte, timestamp string, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(timestamp))
	m.Write([]byte("."))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Verify reports whether signature is Sign(secret, timestamp, body), in
// constant time: what a receiver checks.
func Verify(secret []byte, timestamp string, body []byte, signature string) bool {
	return hmac.Equal([]byte(Sign(secret, timestamp, body)), []byte(signature))
}

// host names a webhook in logs: its host only.
func host(u string) string {
	if pu, err := url.Parse(u); err == nil && pu.Host != "" {
		return pu.Host
	}
	return "?"
}

// redact drops the URL (which may carry a credential) from a transport
// error.
func redact(err error) error {
	if ue, ok := err.(*url.Error); ok {
		return fmt.Errorf("%s %s: %w", ue.Op, host(ue.URL), ue.Err)
	}
	return err
}
