package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/threadmill/threadmill/runstore"
)

// A run queued behind an earlier run of its pipeline says which one.
func TestStatusShowsWaitingFor(t *testing.T) {
	var b bytes.Buffer
	st := &runstore.RunState{ID: "weekly@2026-03-09T09:00:00Z", Pipeline: "weekly", Status: runstore.StatusPending,
		WaitingFor: "weekly@2026-03-02T09:00:00Z", CreatedAt: time.Now()}
	printRun(&b, st, time.Now())
	if !strings.Contains(b.String(), "waiting for  weekly@2026-03-02T09:00:00Z to end (schedule.overlap: queue)") {
		t.Errorf("status of a queued run:\n%s", b.String())
	}
}
