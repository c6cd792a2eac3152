package webui

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/threadmill/threadmill/internal/runlist"
)

// liveRun is what the live updates send for one run: the figures its row
// and run page show, already formatted.
type liveRun struct {
	Key       string `json:"key"`
	Status    string `json:"status"`
	Done      int    `json:"done"`
	Total     int    `json:"total"`
	Succeeded int    `json:"succeeded"`
	Failed    int    `json:"failed"`
	Skipped   int    `json:"skipped"`
	Canceled  int    `json:"canceled"`
	Tokens    string `json:"tokens"`
	Duration  string `json:"duration"`
	Items     string `json:"items"`
	Live      bool   `json:"live"`
	// Steps are the run's steps, for its usage table.
	Steps []liveStep `json:"steps,omitempty"`
}

// liveStep is one step's figures in the live updates.
type liveStep struct {
	ID        string `json:"id"`
	Total     int    `json:"total"`
	Succeeded int    `json:"succeeded"`
	Failed    int    `json:"failed"`
	Skipped   int    `json:"skipped"`
	Canceled  int    `json:"canceled"`
	Input     string `json:"input"`
	Output    string `json:"output"`
}

// events streams the runs in Redis as server-sent events ("runs", a JSON
// array of liveRun) every Interval while they change. Without Redis there
// is nothing live: 204, which tells EventSource not to reconnect.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	if s.opts.Store == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, "retry: 2000\n\n")
	_ = rc.Flush()
	ctx := r.Context()
	var last []byte
	t := time.NewTicker(s.opts.Interval)
	defer t.Stop()
	for quiet := 0; ; quiet++ {
		states, err := s.opts.Store.Runs(ctx)
		if err != nil && ctx.Err() == nil {
			s.opts.Logger.Warn("webui: live updates: runs in Redis not read", "err", err)
		}
		runs := make([]liveRun, 0, len(states))
		for i := range states {
			lr := liveOf(runlist.FromState(&states[i], s.opts.Now()))
			for _, st := range states[i].Steps {
				lr.Steps = append(lr.Steps, liveStep{ID: st.ID, Total: st.Total, Succeeded: st.Succeeded, Failed: st.Failed, Skipped: st.Skipped,
					Canceled: st.Canceled, Input: thousands(int64(st.Usage.InputTokens)), Output: thousands(int64(st.Usage.OutputTokens))})
			}
			runs = append(runs, lr)
		}
		b, _ := json.Marshal(runs)
		switch {
		case err == nil && !bytes.Equal(b, last):
			if _, werr := fmt.Fprintf(w, "event: runs\ndata: %s\n\n", b); werr != nil {
				return
			}
			last, quiet = b, 0
		case quiet >= 15:
			if _, werr := io.WriteString(w, ": ping\n\n"); werr != nil {
				return
			}
			quiet = 0
		}
		if err := rc.Flush(); err != nil {
			return
		}
		if !s.waitOrClosed(ctx, t) {
			return
		}
	}
}

// liveOf formats a row for the live updates.
func liveOf(row *runlist.Row) liveRun {
	return liveRun{Key: row.Key(), Status: row.Status, Done: row.Done, Total: row.Total,
		Succeeded: row.Succeeded, Failed: row.Failed, Skipped: row.Skipped, Canceled: row.Canceled,
		Tokens: thousands(row.Tokens), Duration: duration(row.Duration()), Items: itemsText(row), Live: row.Live()}
}
