package worker_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/threadmill/threadmill/internal/hostile"
	"github.com/threadmill/threadmill/results"
	"github.com/threadmill/threadmill/runstore"
	"github.com/threadmill/threadmill/workspace"
	"github.com/threadmill/threadmill/workspace/simulator"
)

// assertOneInteractionEach checks, through the simulator's counters, that
// it created exactly n interactions, each correlation id (item turn) once.
func assertOneInteractionEach(t *testing.T, e *env, n int) {
	t.Helper()
	c := e.sim.Counters()
	if c.InteractionsCreated != n {
		t.Errorf("simulator created %d interactions for %d items", c.InteractionsCreated, n)
	}
	for corr, k := range c.Correlations {
		if k != 1 {
			t.Errorf("correlation id %s was sent %d times", corr, k)
		}
	}
}

// assertPaidOnce checks that the run succeeded with n items and that the
// simulator created exactly one interaction per item: no item paid twice.
func assertPaidOnce(t *testing.T, e *env, st *runstore.RunState, n int) []results.Item {
	t.Helper()
	if st.Status != runstore.StatusSucceeded {
		t.Fatalf("status %q (succeeded %d, failed %d, error %q)", st.Status, st.Succeeded, st.Failed, st.Error)
	}
	items := readItems(t, resultsFile(st.ResultDir))
	if len(items) != n {
		t.Fatalf("%d result lines, want %d", len(items), n)
	}
	assertOneInteractionEach(t, e, n)
	c := e.sim.Counters()
	var in, out int64
	for _, it := range items {
		if len(it.InteractionIDs) != 1 {
			t.Errorf("item %s lists interactions %v, want one", it.Key, it.InteractionIDs)
		}
		in += int64(it.Usage.InputTokens)
		out += int64(it.Usage.OutputTokens)
	}
	if in != c.TokensIn || out != c.TokensOut {
		t.Errorf("results usage %d/%d, simulator billed %d/%d", in, out, c.TokensIn, c.TokensOut)
	}
	return items
}

// The simulator's own knob: the interaction is created and billed, the
// answer a 504 from a proxy. Before the fix every lost answer was paid for
// twice (313 interactions for 300 items at 5%).
func TestLostCreateAnswersArePaidOnce(t *testing.T) {
	e := newEnv(t, simulator.Config{Async: true, Latency: 20 * time.Millisecond,
		Faults: simulator.Faults{LostCreate: 0.3, Seed: 3}})
	e.folder("Inbox", 40)
	e.startWorker()
	st := e.wait(e.start(e.pipeline(faultsPipeline), "lost-1"), 2*time.Minute)
	if got := e.sim.Counters().Faults["lost_create"]; got < 5 {
		t.Fatalf("only %d creates lost: too few to test anything", got)
	}
	assertPaidOnce(t, e, st, 40)
}

// A proxy in front of the server loses the answers of creates in every way
// a proxy can: 504 and 502 pages after the server created the interaction,
// a connection reset midway through the 201, and a create that stalls
// without reaching the server. Each is ambiguous; only a lookup by
// correlation id tells them apart.
func TestProxyLosingCreateAnswersPaysOnce(t *testing.T) {
	e := newEnv(t, simulator.Config{Async: true, Latency: 20 * time.Millisecond})
	e.folder("Inbox", 30)
	lost504 := e.front.Add(&hostile.Rule{Method: http.MethodPost, Path: hostile.CreateInteraction, Times: 4, Do: hostile.LoseAnswer(http.StatusGatewayTimeout)})
	lost502 := e.front.Add(&hostile.Rule{Method: http.MethodPost, Path: hostile.CreateInteraction, Skip: 4, Times: 4, Do: hostile.LoseAnswer(http.StatusBadGateway)})
	reset := e.front.Add(&hostile.Rule{Method: http.MethodPost, Path: hostile.CreateInteraction, Skip: 8, Times: 4, Do: hostile.ResetMidBody()})
	stalled := e.front.Add(&hostile.Rule{Method: http.MethodPost, Path: hostile.CreateInteraction, Skip: 12, Times: 2, Do: hostile.Stall()})
	e.client(workspace.WithTimeout(time.Second))
	e.startWorker()
	st := e.wait(e.start(e.pipeline(faultsPipeline), "proxy-1"), 2*time.Minute)
	for name, r := range map[string]*hostile.Rule{"504": lost504, "502": lost502, "reset": reset, "stall": stalled} {
		if r.Hits() == 0 {
			t.Errorf("rule %s never acted", name)
		}
	}
	assertPaidOnce(t, e, st, 30)
}

// Every interaction answers 404 for a while after its 201, as a read replica
// that has not caught up. Before the fix one 404 on the stream discarded the
// interaction and the retry created another (6 creates for 3 items).
func TestReplicaLagAfterCreateIsPaidOnce(t *testing.T) {
	e := newEnv(t, simulator.Config{Async: true, Latency: 20 * time.Millisecond,
		Faults: simulator.Faults{ReplicaLag: 1, LagDuration: 400 * time.Millisecond}})
	e.folder("Inbox", 10)
	e.startWorker()
	st := e.wait(e.start(e.pipeline(faultsPipeline), "lag-1"), 2*time.Minute)
	if got := e.sim.Counters().Faults["replica_lag"]; got != 10 {
		t.Fatalf("%d lagging interactions, want 10", got)
	}
	assertPaidOnce(t, e, st, 10)
}

// An interaction that is gone for good (404 past the lag grace, and not
// listed in its thread) is replaced; the item paid for two interactions, and
// its result line lists both.
func TestVanishedInteractionIsReplacedAndBothAreListed(t *testing.T) {
	e := newEnv(t, simulator.Config{Async: true, Latency: 20 * time.Millisecond})
	e.folder("Inbox", 1)
	gone := e.front.VanishInteraction()
	e.client(workspace.WithLagGrace(300 * time.Millisecond))
	e.startWorker()
	st := e.wait(e.start(e.pipeline(faultsPipeline), "vanish-1"), time.Minute)
	if st.Status != runstore.StatusSucceeded {
		t.Fatalf("status %q (error %q)", st.Status, st.Error)
	}
	if gone.ID() == "" {
		t.Fatal("no interaction vanished")
	}
	if c := e.sim.Counters(); c.InteractionsCreated != 2 {
		t.Errorf("simulator created %d interactions, want 2 (the vanished one and its replacement)", c.InteractionsCreated)
	}
	items := readItems(t, resultsFile(st.ResultDir))
	if len(items) != 1 {
		t.Fatalf("%d result lines, want 1", len(items))
	}
	it := items[0]
	if it.State != results.StateSucceeded || len(it.InteractionIDs) != 2 || !slices.Contains(it.InteractionIDs, gone.ID()) {
		t.Errorf("item %s: state %s, interactions %v; want succeeded, listing the vanished %s and its replacement",
			it.Key, it.State, it.InteractionIDs, gone.ID())
	}
	if it.InteractionIDs[0] == gone.ID() {
		t.Errorf("interactions %v: the answered one should come first", it.InteractionIDs)
	}
}

// A listing that claims a next page forever while serving the same page
// ends the run with an error naming the listing after a few requests,
// instead of paging on (2,800 requests in two minutes before the fix).
func TestEndlessArtifactPaginationFailsTheRun(t *testing.T) {
	e := newEnv(t, simulator.Config{})
	e.folder("Inbox", 3)
	endless := e.front.Add(&hostile.Rule{Method: http.MethodGet, Path: hostile.ListArtifacts, Do: hostile.SamePageForever()})
	e.startWorker()
	st := e.wait(e.start(e.pipeline(faultsPipeline), "endless-1"), time.Minute)
	if st.Status != runstore.StatusError {
		t.Fatalf("status %q, want %q", st.Status, runstore.StatusError)
	}
	if !strings.Contains(st.Error, "has_next_page") {
		t.Errorf("run error %q does not say what the listing did", st.Error)
	}
	if n := endless.Hits(); n == 0 || n > 4 {
		t.Errorf("%d artifact list requests, want 1..4", n)
	}
	if c := e.sim.Counters(); c.InteractionsCreated != 0 {
		t.Errorf("%d interactions created by a run that could not resolve its artifacts", c.InteractionsCreated)
	}
}

// Hostile bodies while waiting: the first polls of interactions answer a
// gzip bomb (1 GiB decoded) or a 200 MB JSON body. Each such call stops at
// its size limit, the wait polls on, and every item succeeds with one
// interaction.
func TestHostileBodiesWhileWaiting(t *testing.T) {
	e := newEnv(t, simulator.Config{Async: true, Latency: 50 * time.Millisecond})
	e.folder("Inbox", 3)
	// No stream: every wait polls GET, where the hostile bodies are.
	e.front.Add(&hostile.Rule{Method: http.MethodGet, Path: hostile.InteractionStream, Do: hostile.Respond(http.StatusNotFound, `{"message":"no streams here"}`)})
	bomb := e.front.Add(&hostile.Rule{Method: http.MethodGet, Path: hostile.Interaction, Times: 2, Do: hostile.GzipBomb(1 << 30)})
	huge := e.front.Add(&hostile.Rule{Method: http.MethodGet, Path: hostile.Interaction, Times: 2, Do: hostile.HugeJSON(200 << 20)})
	e.startWorker()
	st := e.wait(e.start(e.pipeline(faultsPipeline), "bodies-1"), time.Minute)
	if bomb.Hits() != 2 || huge.Hits() != 2 {
		t.Fatalf("hostile bodies sent: %d gzip bombs, %d huge bodies; want 2 and 2", bomb.Hits(), huge.Hits())
	}
	assertPaidOnce(t, e, st, 3)
}
