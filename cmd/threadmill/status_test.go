package main

import (
	"testing"
	"time"

	"github.com/threadmill/threadmill/runstore"
)

func TestStatusTiming(t *testing.T) {
	t0 := time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)
	now := t0.Add(100 * time.Second)
	for _, c := range []struct {
		name      string
		st        runstore.RunState
		el, eta   time.Duration
		elS, etaS string
	}{
		{name: "not started", st: runstore.RunState{Status: runstore.StatusPending, Total: 10}, elS: "-", etaS: "-"},
		{name: "running", st: runstore.RunState{Status: runstore.StatusRunning, StartedAt: t0, Total: 100, Done: 25},
			el: 100 * time.Second, eta: 300 * time.Second, elS: "1m40s", etaS: "5m"},
		{name: "nothing done yet", st: runstore.RunState{Status: runstore.StatusRunning, StartedAt: t0, Total: 100},
			el: 100 * time.Second, elS: "1m40s", etaS: "-"},
		{name: "finished", st: runstore.RunState{Status: runstore.StatusSucceeded, StartedAt: t0, FinishedAt: t0.Add(42 * time.Second), Total: 5, Done: 5},
			el: 42 * time.Second, elS: "42s", etaS: "-"},
	} {
		t.Run(c.name, func(t *testing.T) {
			el, eta := c.st.Timing(now)
			if el != c.el || eta != c.eta {
				t.Errorf("timing = %s, %s; want %s, %s", el, eta, c.el, c.eta)
			}
			if dur(el) != c.elS || dur(eta) != c.etaS {
				t.Errorf("dur = %q, %q; want %q, %q", dur(el), dur(eta), c.elS, c.etaS)
			}
		})
	}
}
