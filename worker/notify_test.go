package worker_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/threadmill/threadmill/notify"
	"github.com/threadmill/threadmill/runstore"
	"github.com/threadmill/threadmill/worker"
	"github.com/threadmill/threadmill/workspace/simulator"
)

// receiver is a webhook endpoint that answers each request with the next
// status of its script (200 once the script is used up) and keeps what it
// received.
type receiver struct {
	mu     sync.Mutex
	script []int
	got    []delivery
	srv    *httptest.Server
}

type delivery struct {
	header http.Header
	body   []byte
}

func newReceiver(t *testing.T, script ...int) *receiver {
	r := &receiver{script: script}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.got = append(r.got, delivery{req.Header.Clone(), b})
		code := http.StatusOK
		if len(r.script) > 0 {
			code, r.script = r.script[0], r.script[1:]
		}
		r.mu.Unlock()
		w.WriteHeader(code)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) deliveries() []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]delivery(nil), r.got...)
}

// TestNotifyWebhooksSignedRetriedNeverFailTheRun: a flaky webhook gets
// the run's payload after two retries, signed; one that refuses it (404)
// is called once and the run still succeeds; one that asks only for
// failed runs is not called.
func TestNotifyWebhooksSignedRetriedNeverFailTheRun(t *testing.T) {
	e := newEnv(t, simulator.Config{})
	e.folder("Inbox", 2)
	const secret = "whsec-test-6d2f"
	env := map[string]string{"HOOK_SECRET": secret}
	e.startWorker(func(c *worker.Config) {
		c.Notifier = &notify.Sender{Backoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond, Attempts: 4,
			LookupEnv: func(k string) (string, bool) { v, ok := env[k]; return v, ok }}
	})
	flaky := newReceiver(t, 500, 503)
	refusing := newReceiver(t, 404, 404, 404, 404)
	failedOnly := newReceiver(t)
	p := e.pipeline(`
version: 1
name: hooked
workspace: { project: proj_test }
defaults: { max_tokens: 60 }
artifacts:
  docs: { folder: "Inbox" }
steps:
  - id: summarize
    for_each: docs
    prompt: "Summarize {{ .Artifact.Name }}."
notify:
  - { webhook: "` + flaky.srv.URL + `/hook", secret_env: HOOK_SECRET }
  - { webhook: "` + refusing.srv.URL + `" }
  - { webhook: "` + failedOnly.srv.URL + `", on: [failed, stopped] }
`)
	st := e.wait(e.start(p, "hooked-1"), time.Minute)
	if st.Status != runstore.StatusSucceeded {
		t.Fatalf("status %q (%s): a webhook must never fail the run", st.Status, st.Error)
	}
	run := readRun(t, st.ResultDir)

	// The deliveries happen after the run is recorded finished: wait for
	// the flaky webhook's third attempt.
	waitFor(t, 10*time.Second, "three attempts at the flaky webhook", func() bool { return len(flaky.deliveries()) == 3 })
	waitFor(t, 10*time.Second, "the refused webhook's attempt", func() bool { return len(refusing.deliveries()) == 1 })
	got := flaky.deliveries()
	for i, d := range got {
		ts := d.header.Get(notify.TimestampHeader)
		if !notify.Verify([]byte(secret), ts, d.body, d.header.Get(notify.SignatureHeader)) {
			t.Errorf("attempt %d: signature %q does not verify", i+1, d.header.Get(notify.SignatureHeader))
		}
		if d.header.Get(notify.DeliveryHeader) != "hooked-1/0" {
			t.Errorf("attempt %d: delivery id %q, want hooked-1/0 on every retry", i+1, d.header.Get(notify.DeliveryHeader))
		}
		if strings.Contains(string(d.body), secret) {
			t.Errorf("the secret is in the body")
		}
	}
	var pl notify.Payload
	if err := json.Unmarshal(got[2].body, &pl); err != nil {
		t.Fatal(err)
	}
	if pl.RunID != "hooked-1" || pl.Pipeline != "hooked" || pl.Status != "succeeded" || pl.Total != 2 || pl.Counts["succeeded"] != 2 ||
		pl.TotalTokens != run.Usage.Total() || pl.ReportPath != st.ResultDir+"/report.md" ||
		!strings.Contains(pl.Text, "run hooked-1 of hooked succeeded: 2 items (2 succeeded)") {
		t.Errorf("payload: %+v", pl)
	}
	if r := refusing.deliveries(); r[0].header.Get(notify.SignatureHeader) != "" {
		t.Errorf("an unsigned webhook got a signature")
	}
	if n := len(failedOnly.deliveries()); n != 0 {
		t.Errorf("the webhook for failed runs was called %d times for a succeeded run", n)
	}
}

// TestNotifyRunThatCannotStart: a run whose artifact set does not resolve
// ends in error, and the webhooks that want errors hear why.
func TestNotifyRunThatCannotStart(t *testing.T) {
	e := newEnv(t, simulator.Config{})
	e.startWorker(func(c *worker.Config) { c.Notifier = &notify.Sender{Backoff: time.Millisecond} })
	hook := newReceiver(t)
	successOnly := newReceiver(t)
	p := e.pipeline(`
version: 1
name: broken
workspace: { project: proj_test }
artifacts:
  docs: { folder: "No/Such/Folder" }
steps:
  - id: summarize
    for_each: docs
    prompt: "Summarize {{ .Artifact.Name }}."
notify:
  - { webhook: "` + successOnly.srv.URL + `", on: [succeeded] }
  - { webhook: "` + hook.srv.URL + `", on: [error] }
`)
	st := e.wait(e.start(p, "broken-1"), time.Minute)
	if st.Status != runstore.StatusError {
		t.Fatalf("status %q, want error", st.Status)
	}
	waitFor(t, 10*time.Second, "the error webhook", func() bool { return len(hook.deliveries()) == 1 })
	var pl notify.Payload
	if err := json.Unmarshal(hook.deliveries()[0].body, &pl); err != nil {
		t.Fatal(err)
	}
	if pl.Status != "error" || !strings.Contains(pl.Error, "No/Such/Folder") || !strings.Contains(pl.Text, "could not finish") {
		t.Errorf("payload %+v", pl)
	}
	if n := len(successOnly.deliveries()); n != 0 {
		t.Errorf("the succeeded-only webhook was called %d times", n)
	}
}
