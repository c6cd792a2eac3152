package notify_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/threadmill/threadmill/notify"
	"github.com/threadmill/threadmill/pipelines"
)

func TestSendGivesUpAfterItsAttemptsAndSkipsMissingSecrets(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		calls.Add(1)
		w.WriteHeader(http.StatusBadGateway)
	}))
	defer srv.Close()
	s := &notify.Sender{Attempts: 3, Backoff: time.Millisecond, LookupEnv: func(string) (string, bool) { return "", false }}
	res := s.Send(context.Background(), []pipelines.Notify{
		{Webhook: srv.URL + "/secret-path-token"},
		{Webhook: srv.URL, SecretEnv: "MISSING"},
	}, notify.Payload{RunID: "r", Pipeline: "p", Status: "failed"})
	if calls.Load() != 3 || res[0].Attempts != 3 || res[0].Err == nil {
		t.Errorf("a 502 webhook: %d calls, result %+v; want 3 attempts and an error", calls.Load(), res[0])
	}
	if strings.Contains(res[0].Err.Error(), "secret-path-token") {
		t.Errorf("the error names the webhook URL: %v", res[0].Err)
	}
	if res[1].Attempts != 0 || res[1].Err == nil || !strings.Contains(res[1].Err.Error(), "secret_env MISSING is not set") {
		t.Errorf("a webhook whose secret is missing: %+v", res[1])
	}
}

// ExampleSign: a receiver recomputes the signature from the timestamp
// header and the body.
func ExampleSign() {
	body := []byte(`{"text":"threadmill: run r1 of brief succeeded"}`)
	sig := notify.Sign([]byte("s3cret"), "1767225600", body)
	fmt.Println(strings.HasPrefix(sig, "sha256="), len(sig))
	fmt.Println(notify.Verify([]byte("s3cret"), "1767225600", body, sig))
	fmt.Println(notify.Verify([]byte("s3cret"), "1767225601", body, sig))
	// Output:
	// true 71
	// true
	// false
}
