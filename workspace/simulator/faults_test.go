package simulator_test

import (
	"encoding/json"
	"errors"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/threadmill/threadmill/workspace"
	"github.com/threadmill/threadmill/workspace/simulator"
)

func TestFaultsAtRateOne(t *testing.T) {
	cases := []struct {
		name        string
		faults      simulator.Faults
		status      int
		contentType string
		retryAfter  string
		bodyHas     string
	}{
		{"500", simulator.Faults{Error500: 1}, 500, "application/json", "", `"message":"simulated internal server error`},
		{"502", simulator.Faults{Error502: 1}, 502, "text/html; charset=utf-8", "", "<h1>502 Bad Gateway</h1>"},
		{"503", simulator.Faults{Error503: 1, RetryAfter: 3 * time.Second}, 503, "application/json", "3", "service temporarily unavailable"},
		{"429", simulator.Faults{TooMany429: 1, RetryAfter: 1500 * time.Millisecond}, 429, "application/json", "2", "too many requests"},
		{"429 default retry", simulator.Faults{TooMany429: 1}, 429, "application/json", "1", "too many requests"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, simulator.Config{Faults: tc.faults})
			for range 5 {
				status, hdr, body := e.send(e.request("GET", "/api/v1/app/me", nil))
				if status != tc.status || hdr.Get("Content-Type") != tc.contentType ||
					hdr.Get("Retry-After") != tc.retryAfter || !strings.Contains(string(body), tc.bodyHas) {
					t.Fatalf("%d %q retry-after=%q %s", status, hdr.Get("Content-Type"), hdr.Get("Retry-After"), body)
				}
			}
			// Faults never touch health or the admin endpoint.
			if status, _ := e.do("GET", "/api/health", nil); status != 200 {
				t.Fatalf("health under faults: %d", status)
			}
			c := e.sim.Counters()
			if c.Faults[strings.Fields(tc.name)[0]] != 5 || c.Requests["GET /api/v1/app/me"][tc.status] != 5 {
				t.Fatalf("counters = %+v", c)
			}
		})
	}
}

func TestFaultsAtRateZero(t *testing.T) {
	e := newEnv(t, simulator.Config{Faults: simulator.Faults{Seed: 42}})
	for range 200 {
		if status, body := e.do("GET", "/api/v1/app/me", nil); status != 200 {
			t.Fatalf("status %d %s with all fault rates at zero", status, body)
		}
	}
	if c := e.sim.Counters(); len(c.Faults) != 0 {
		t.Fatalf("faults = %v", c.Faults)
	}
}

// TestFaultRatesAreSeeded checks that partial rates land near their value
// and that the same seed gives the same sequence.
func TestFaultRatesAreSeeded(t *testing.T) {
	run := func(seed uint64) []int {
		e := newEnv(t, simulator.Config{Faults: simulator.Faults{Error500: 0.2, Error503: 0.1, TooMany429: 0.1, Seed: seed}})
		var out []int
		for range 400 {
			status, _ := e.do("GET", "/api/v1/app/me", nil)
			out = append(out, status)
		}
		return out
	}
	a, b, c := run(7), run(7), run(8)
	if !slices.Equal(a, b) {
		t.Fatal("the same seed gave different fault sequences")
	}
	if slices.Equal(a, c) {
		t.Fatal("different seeds gave the same fault sequence")
	}
	count := func(s []int, code int) int {
		n := 0
		for _, v := range s {
			if v == code {
				n++
			}
		}
		return n
	}
	for code, want := range map[int]int{500: 80, 503: 40, 429: 40, 200: 240} {
		if got := count(a, code); got < want*6/10 || got > want*14/10 {
			t.Errorf("status %d: %d of 400, want about %d", code, got, want)
		}
	}
}

func TestSetFaultsMidRun(t *testing.T) {
	e := newEnv(t, simulator.Config{})
	if status, _ := e.do("GET", "/api/v1/app/me", nil); status != 200 {
		t.Fatal(status)
	}
	e.sim.SetFaults(simulator.Faults{Error500: 1})
	if status, _ := e.do("GET", "/api/v1/app/me", nil); status != 500 {
		t.Fatalf("after SetFaults: %d", status)
	}
	e.sim.SetFaults(simulator.Faults{})
	if status, _ := e.do("GET", "/api/v1/app/me", nil); status != 200 {
		t.Fatalf("after clearing faults: %d", status)
	}
}

func TestSlowFault(t *testing.T) {
	e := newEnv(t, simulator.Config{Faults: simulator.Faults{Slow: 1, SlowDelay: 150 * time.Millisecond}})
	start := time.Now()
	if status, _ := e.do("GET", "/api/v1/app/me", nil); status != 200 {
		t.Fatal(status)
	}
	if el := time.Since(start); el < 150*time.Millisecond {
		t.Fatalf("slow request answered after %s", el)
	}
	if c := e.sim.Counters(); c.Faults["slow"] != 1 {
		t.Fatalf("faults = %v", c.Faults)
	}
}

func TestCutStream(t *testing.T) {
	e := newEnv(t, simulator.Config{})
	th := e.createThread("cut")
	in := e.createInteraction(th.ID, chat("Summarize the refund policy in five bullets."), e.artifactID("Policies/refund-policy.md"))
	e.sim.SetFaults(simulator.Faults{CutStream: 1})

	_, sr := e.openStream(in.ID)
	evs, err := sr.readAll()
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("cut stream ended with %v, want an unexpected EOF", err)
	}
	names := eventNames(evs)
	if slices.Contains(names, "message_stop") || slices.Contains(names, "message_delta") || countEvents(evs, "content_block_delta") == 0 {
		t.Fatalf("cut stream events = %v", names)
	}
	if !strings.HasPrefix(in.Output(), streamText(evs)) || len(streamText(evs)) >= len(in.Output()) {
		t.Fatalf("cut stream text %q is not a strict prefix of %q", streamText(evs), in.Output())
	}
	c := e.sim.Counters()
	if c.Faults["cut_stream"] != 1 || c.Requests["GET /api/v1/app/interaction/{interactionId}/stream"][200] != 1 {
		t.Fatalf("counters = %+v", c)
	}

	// Without the fault the same stream is whole.
	e.sim.SetFaults(simulator.Faults{})
	_, sr = e.openStream(in.ID)
	evs, err = sr.readAll()
	if err != nil || eventNames(evs)[len(evs)-1] != "message_stop" || streamText(evs) != in.Output() {
		t.Fatalf("stream without fault: %v %v", eventNames(evs), err)
	}
}

func TestRateLimit(t *testing.T) {
	e := newEnv(t, simulator.Config{RateLimit: 1, RateBurst: 5})
	var ok, limited int
	start := time.Now()
	for range 20 {
		status, hdr, body := e.send(e.request("GET", "/api/v1/app/me", nil))
		switch status {
		case 200:
			ok++
		case 429:
			limited++
			if n, err := strconv.Atoi(hdr.Get("Retry-After")); err != nil || n < 1 {
				t.Fatalf("Retry-After = %q", hdr.Get("Retry-After"))
			}
			if !strings.Contains(string(body), "rate limit exceeded") {
				t.Fatalf("429 body %s", body)
			}
		default:
			t.Fatalf("status %d", status)
		}
	}
	// The burst of 5 passes, plus at most one refilled token per second
	// (20 requests take milliseconds, seconds on a loaded machine).
	maxOK := 5 + int(time.Since(start).Seconds()) + 1
	if ok < 5 || ok > maxOK || limited == 0 || ok+limited != 20 {
		t.Fatalf("%d passed, %d limited in %s; want 5 to %d passed", ok, limited, time.Since(start), maxOK)
	}
	c := e.sim.Counters()
	if c.RateLimited != limited || c.Requests["GET /api/v1/app/me"][429] != limited {
		t.Fatalf("counters = %+v", c)
	}
	// Health is not rate limited.
	if status, _ := e.do("GET", "/api/health", nil); status != 200 {
		t.Fatal("health was rate limited")
	}
	// After waiting, requests pass again.
	waitUntil(t, 5*time.Second, "the rate limit to refill", func() bool {
		status, _ := e.do("GET", "/api/v1/app/me", nil)
		return status == 200
	})
	e.sim.SetRateLimit(0, 0)
	for range 20 {
		if status, _ := e.do("GET", "/api/v1/app/me", nil); status != 200 {
			t.Fatalf("limit off: %d", status)
		}
	}
}

func TestCountersAndAdminEndpoint(t *testing.T) {
	e := newEnv(t, simulator.Config{Latency: 50 * time.Millisecond})
	th := e.createThread("count")
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			e.createInteraction(th.ID, chat("Who approves refunds over 200 euros?"), e.artifactID("Policies/refund-policy.md"))
		})
	}
	wg.Wait()
	e.do("POST", "/api/v1/app/chat/validate", `{"messages":[]}`)

	c := e.sim.Counters()
	if c.InteractionsCreated != 4 || c.ThreadsCreated != 1 || c.Validations != 1 || c.ValidationsFailed != 1 {
		t.Fatalf("counters = %+v", c)
	}
	if c.Requests["POST /api/v1/app/thread/{threadId}/interaction"][201] != 4 ||
		c.Requests["POST /api/v1/app/project/{projectId}/thread"][200] != 1 ||
		c.Requests["POST /api/v1/app/chat/validate"][400] != 1 {
		t.Fatalf("requests = %v", c.Requests)
	}
	if c.MaxInFlight < 2 || c.MaxObservedRPS < 3 || c.MaxInWindow(2) != 6 || c.Total("POST /api/v1/app/thread/{threadId}/interaction") != 4 {
		t.Fatalf("max in flight %d, max rps %d, in window %d", c.MaxInFlight, c.MaxObservedRPS, c.MaxInWindow(2))
	}

	e.org = ""
	var served simulator.Counters
	status, data := e.do("GET", "/_sim/counters", nil)
	if status != 200 || json.Unmarshal(data, &served) != nil {
		t.Fatalf("admin endpoint: %d %s", status, data)
	}
	if served.InteractionsCreated != 4 || served.TokensIn != c.TokensIn || served.TokensOut != c.TokensOut ||
		served.Requests["POST /api/v1/app/thread/{threadId}/interaction"][201] != 4 {
		t.Fatalf("served counters = %+v", served)
	}

	e.sim.ResetCounters()
	if c := e.sim.Counters(); c.InteractionsCreated != 0 || len(c.Requests) != 0 || c.TokensIn != 0 {
		t.Fatalf("after reset = %+v", c)
	}
}

func TestSetAsyncMidRun(t *testing.T) {
	e := newEnv(t, simulator.Config{Latency: 20 * time.Millisecond})
	th := e.createThread("toggle")
	id := e.artifactID("Policies/on-call-policy.md")
	if in := e.createInteraction(th.ID, chat("How fast must a page be acknowledged?"), id); in.State != "Completed" {
		t.Fatalf("sync: %s", in.State)
	}
	e.sim.SetAsync(true)
	e.sim.SetLatency(time.Hour, 0, 0)
	in := e.createInteraction(th.ID, chat("How fast must a page be acknowledged?"), id)
	if in.State != "Processing" {
		t.Fatalf("async: %s", in.State)
	}
	if status, _ := e.do("POST", "/api/v1/app/interaction/"+in.ID+"/cancel", nil); status != 204 {
		t.Fatalf("cancel: %d", status)
	}
	if got := e.getInteraction(in.ID); got.StopReason() != "cancelled" || got.Output() != "" {
		t.Fatalf("cancelled before the first token: %+v", got.AssistantOutput)
	}
}

func TestRecordsAndCorrelations(t *testing.T) {
	e := newEnv(t, simulator.Config{})
	th := e.createThread("records")
	for _, cid := range []string{"run1/summarize/0", "run1/summarize/1", "run1/summarize/1"} {
		req := chat("Who approves goodwill refunds?")
		req.CorrelationID = cid
		e.createInteraction(th.ID, req, e.artifactID("Policies/refund-policy.md"))
	}
	brief := chat("Write the brief from these summaries. The first summary says refunds take a week. The second summary says SSO works.")
	brief.CorrelationID = "run1/brief"
	var answer workspace.ChatResponse
	e.must("POST", "/api/v1/app/chat", brief, 200, &answer)

	c := e.sim.Counters()
	if want := map[string]int{"run1/summarize/0": 1, "run1/summarize/1": 2, "run1/brief": 1}; !maps.Equal(c.Correlations, want) {
		t.Fatalf("correlations = %v, want %v", c.Correlations, want)
	}
	ins := e.sim.Interactions()
	if len(ins) != 3 || ins[1].PGPT.CorrelationID != "run1/summarize/1" || ins[0].State != "Completed" || ins[0].Output() == "" {
		t.Fatalf("interactions = %+v", ins)
	}
	chats := e.sim.Chats()
	if len(chats) != 1 || chats[0].Request.Messages[0].Content[0].Text != brief.Messages[0].Content[0].Text ||
		chats[0].Response.ID != answer.ID || chats[0].Response.Text() != answer.Text() {
		t.Fatalf("chats = %+v", chats)
	}
}

func TestResetCountersOverHTTP(t *testing.T) {
	e := newEnv(t, simulator.Config{})
	e.must("GET", "/api/v1/app/me", nil, 200, nil)
	e.org = ""
	if status, body := e.do("DELETE", "/_sim/counters", nil); status != 204 || len(body) != 0 {
		t.Fatalf("reset: %d %s", status, body)
	}
	if c := e.sim.Counters(); c.Total("GET /api/v1/app/me") != 0 || c.Requests["DELETE /_sim/counters"][204] != 1 {
		t.Fatalf("after reset: %+v", c.Requests)
	}
}

func TestLostCreate(t *testing.T) {
	e := newEnv(t, simulator.Config{Faults: simulator.Faults{LostCreate: 1}})
	th := e.createThread("lost")
	req := chat("Who approves goodwill refunds?")
	req.CorrelationID = "run/step/7"
	body, _ := json.Marshal(workspace.CreateInteractionRequest{ThreadID: th.ID, PGPT: req})
	status, hdr, page := e.send(e.request("POST", "/api/v1/app/thread/"+th.ID+"/interaction", body))
	if status != 504 || !strings.HasPrefix(hdr.Get("Content-Type"), "text/html") || !strings.Contains(string(page), "504 Gateway Time-out") {
		t.Fatalf("%d %q %s", status, hdr.Get("Content-Type"), page)
	}
	// The interaction exists nevertheless, findable by its correlation id.
	var list workspace.Page[workspace.Interaction]
	e.must("GET", "/api/v1/app/thread/"+th.ID+"/interaction", nil, 200, &list)
	if len(list.Data) != 1 || list.Data[0].PGPT.CorrelationID != "run/step/7" || list.Data[0].State != "Completed" {
		t.Fatalf("interactions after a lost create: %+v", list.Data)
	}
	c := e.sim.Counters()
	if c.InteractionsCreated != 1 || c.Faults["lost_create"] != 1 || c.Correlations["run/step/7"] != 1 || c.TokensIn == 0 {
		t.Fatalf("counters = %+v", c)
	}
}

func TestLatencyKnobs(t *testing.T) {
	e := newEnv(t, simulator.Config{PerOutputToken: 3 * time.Millisecond})
	var a workspace.ChatResponse
	start := time.Now()
	e.must("POST", "/api/v1/app/chat", chat("Summarize. The deploy went out on Monday without problems. Two customers asked about the new export page."), 200, &a)
	if el, min := time.Since(start), time.Duration(a.Usage.OutputTokens)*3*time.Millisecond; el < min {
		t.Fatalf("answer of %d tokens took %s, less than %s", a.Usage.OutputTokens, el, min)
	}

	// Jitter spreads the latency around its base, never below zero.
	e.sim.SetLatency(60*time.Millisecond, 0, 50*time.Millisecond)
	fastest := time.Hour
	for range 20 {
		start := time.Now()
		e.must("POST", "/api/v1/app/chat", chat("Give one-line status."), 200, nil)
		fastest = min(fastest, time.Since(start))
	}
	if fastest < 10*time.Millisecond || fastest >= 55*time.Millisecond {
		t.Fatalf("fastest of 20 jittered answers took %s, want within [10ms, 55ms)", fastest)
	}
}

func TestConfigValidate(t *testing.T) {
	if err := (simulator.Config{}).Validate(); err != nil {
		t.Fatalf("zero config: %v", err)
	}
	for msg, cfg := range map[string]simulator.Config{
		"Faults.Error500 must be a rate in [0, 1], got 1.5":   {Faults: simulator.Faults{Error500: 1.5}},
		"Faults.CutStream must be a rate in [0, 1], got -0.1": {Faults: simulator.Faults{CutStream: -0.1}},
		"must not exceed 1, got 1.2":                          {Faults: simulator.Faults{Error503: 0.6, TooMany429: 0.6}},
		"Latency must not be negative":                        {Latency: -time.Second},
		"PingInterval must not be negative":                   {PingInterval: -1},
		"RateLimit must be >= 0 requests per second, got -1":  {RateLimit: -1},
		"RateBurst must be >= 0":                              {RateBurst: -3},
		"MaxBodyBytes must be >= 0":                           {MaxBodyBytes: -1},
		"Faults.SlowDelay must not be negative, got -1s":      {Faults: simulator.Faults{SlowDelay: -time.Second}},
	} {
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("Validate() = %v, want %q", err, msg)
		}
	}
	// New tolerates what Validate refuses.
	sim := simulator.New(simulator.Config{PingInterval: -1, MaxBodyBytes: -1, RateLimit: -5})
	sim.Close()
}
