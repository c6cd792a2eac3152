package worker_test

import (
	"strings"
	"testing"
	"time"

	"github.com/threadmill/threadmill/results"
	"github.com/threadmill/threadmill/runstore"
	"github.com/threadmill/threadmill/worker"
	"github.com/threadmill/threadmill/workspace/simulator"
)

func TestOnErrorFailStopsTheRun(t *testing.T) {
	e := newEnv(t, simulator.Config{Async: true})
	e.folder("Inbox", 5)
	e.startWorker(func(c *worker.Config) { c.Concurrency = 1 })
	p := e.pipeline(`
version: 1
name: strict
workspace: { project: proj_test }
limits: { concurrency: 1 }
artifacts:
  docs: { folder: "Inbox" }
steps:
  - id: summarize
    for_each: docs
    max_tokens: 50000
    on_error: fail
    prompt: "Summarize {{ .Artifact.Name }}."
  - id: brief
    needs: [summarize]
    prompt: "Brief: {{ range .Steps.summarize.Items }}{{ .Output }} {{ end }}"
`)
	run := e.start(p, "strict-1")
	st := e.wait(run, time.Minute)
	if st.Status != runstore.StatusStopped || st.StopReason == "" {
		t.Fatalf("status %q, stop reason %q; want stopped with a reason", st.Status, st.StopReason)
	}
	if st.Failed != 1 || st.Skipped != 4 || st.Steps[1].Planned {
		t.Errorf("failed %d, skipped %d, brief planned %v; want 1, 4, false", st.Failed, st.Skipped, st.Steps[1].Planned)
	}
	items := readItems(t, resultsFile(st.ResultDir))
	if len(items) != 5 {
		t.Fatalf("%d result lines, want 5", len(items))
	}
	for _, it := range items {
		if it.State == results.StateSkipped && !strings.Contains(it.Error, "run stopped") {
			t.Errorf("item %s skipped with %q; want the run's stop reason", it.Key, it.Error)
		}
	}
	if r := readRun(t, st.ResultDir); r.Status != results.StatusStopped {
		t.Errorf("run.json status %q", r.Status)
	}
	if c := e.sim.Counters(); c.Validations != 1 {
		t.Errorf("%d validations: the skipped items must not be sent", c.Validations)
	}
}

func TestChatModeSendsOneShotChats(t *testing.T) {
	e := newEnv(t, simulator.Config{})
	e.startWorker()
	p := e.pipeline(`
version: 1
name: chat
workspace: { project: proj_test }
defaults: { mode: chat, max_tokens: 40 }
steps:
  - id: ask
    prompt: "List three causes of failed billing exports."
  - id: pick
    needs: [ask]
    prompt: "Which of these is the most likely? {{ .Steps.ask.Output }}"
`)
	run := e.start(p, "chat-1")
	st := e.wait(run, time.Minute)
	if st.Status != runstore.StatusSucceeded {
		t.Fatalf("status %q (%s)", st.Status, st.Error)
	}
	items := readItems(t, resultsFile(st.ResultDir))
	if len(items) != 2 || items[0].Output == "" || items[1].ThreadID != "" || len(items[1].InteractionIDs) != 0 {
		t.Fatalf("items %+v", items)
	}
	if prompt := items[1].Requests[0].Messages[0].Content[0].Text; !strings.Contains(prompt, items[0].Output) {
		t.Errorf("the second chat's prompt %q lacks the first answer", prompt)
	}
	c := e.sim.Counters()
	if c.ChatsAnswered != 2 || c.ThreadsCreated != 0 || c.InteractionsCreated != 0 {
		t.Errorf("chats %d, threads %d, interactions %d; want 2, 0, 0", c.ChatsAnswered, c.ThreadsCreated, c.InteractionsCreated)
	}
	in := int64(items[0].Usage.InputTokens + items[1].Usage.InputTokens)
	out := int64(items[0].Usage.OutputTokens + items[1].Usage.OutputTokens)
	if in != c.TokensIn || out != c.TokensOut {
		t.Errorf("usage %d/%d, simulator billed %d/%d", in, out, c.TokensIn, c.TokensOut)
	}
}

func TestThreadPerRunIsShared(t *testing.T) {
	e := newEnv(t, simulator.Config{Async: true, Latency: 5 * time.Millisecond})
	e.folder("Inbox", 8)
	e.startWorker()
	p := e.pipeline(`
version: 1
name: shared-thread
workspace: { project: proj_test }
defaults: { max_tokens: 30 }
artifacts:
  docs: { folder: "Inbox" }
steps:
  - id: summarize
    for_each: docs
    thread: { per: run, name: "All summaries {{ .Run.ID }}" }
    prompt: "Summarize {{ .Artifact.Name }}."
`)
	run := e.start(p, "shared-thread-1")
	st := e.wait(run, time.Minute)
	if st.Status != runstore.StatusSucceeded {
		t.Fatalf("status %q (%s)", st.Status, st.Error)
	}
	items := readItems(t, resultsFile(st.ResultDir))
	for _, it := range items {
		if it.ThreadID == "" || it.ThreadID != items[0].ThreadID {
			t.Errorf("item %s in thread %q, item %s in %q: want one shared thread", it.Key, it.ThreadID, items[0].Key, items[0].ThreadID)
		}
	}
	if c := e.sim.Counters(); c.ThreadsCreated != 1 || c.InteractionsCreated != 8 {
		t.Errorf("%d threads, %d interactions; want 1 and 8", c.ThreadsCreated, c.InteractionsCreated)
	}
}
