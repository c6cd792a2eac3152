package workspace_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/threadmill/threadmill/workspace"
)

func TestIsDefiniteRejection(t *testing.T) {
	answered := func(status int) error {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(status)
			io.WriteString(w, `{"message":"no"}`)
		}))
		defer srv.Close()
		c, err := workspace.New(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.CreateInteraction(context.Background(), "t1", workspace.CreateInteractionRequest{})
		return err
	}
	for status, want := range map[int]bool{
		400: true, 401: true, 403: true, 404: true, 409: true, 413: true, 422: true, 429: true,
		408: false, 500: false, 502: false, 503: false, 504: false,
	} {
		err := answered(status)
		if got := workspace.IsDefiniteRejection(fmt.Errorf("create: %w", err)); got != want {
			t.Errorf("%d: IsDefiniteRejection = %v, want %v (%v)", status, got, want, err)
		}
	}
	// No answer at all is ambiguous too.
	c, err := workspace.New("http://127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.CreateInteraction(context.Background(), "t1", workspace.CreateInteractionRequest{})
	if err == nil || workspace.IsDefiniteRejection(err) {
		t.Errorf("refused connection: IsDefiniteRejection(%v) = true", err)
	}
	if workspace.IsDefiniteRejection(errors.New("x")) || workspace.IsDefiniteRejection(nil) {
		t.Error("a plain error is a definite rejection")
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"3":                             3 * time.Second,
		"86400":                         24 * time.Hour,
		"1e9":                           24 * time.Hour,
		"-5":                            0,
		"Wed, 02 Dec 2026 09:02:00 GMT": 2 * time.Minute,
		"Thu, 03 Dec 2026 09:00:00 GMT": 24 * time.Hour,
	} {
		got, ok := workspace.ParseRetryAfter(http.Header{"Retry-After": {v}}, now)
		if !ok || got != want {
			t.Errorf("Retry-After %q: %s %v, want %s", v, got, ok, want)
		}
	}
	if _, ok := workspace.ParseRetryAfter(http.Header{}, now); ok {
		t.Error("no header parsed as present")
	}
	if _, ok := workspace.ParseRetryAfter(http.Header{"Retry-After": {"soon"}}, now); ok {
		t.Error("garbage parsed as present")
	}
}
