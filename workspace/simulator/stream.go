package simulator

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/threadmill/threadmill/workspace"
)

// sseWriter writes server-sent events. Events are flushed to the client
// when the stream is about to wait (flush) and when it ends (the handler
// returns), as a server does that writes what is ready in one go: the
// deltas that are due together travel together.
type sseWriter struct {
	w http.ResponseWriter
	f http.Flusher
}

func (e *sseWriter) send(event string, data any) error {
	b, err := json.Marshal(data)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(e.w, "event: %s\ndata: %s\n\n", event, b)
	return err
}

// flush sends the events written so far.
func (e *sseWriter) flush() {
	if e.f != nil {
		e.f.Flush()
	}
}

type (
	evMessageStart struct {
		Type    string                  `json:"type"`
		Message workspace.MessageOutput `json:"message"`
	}
	evBlockStart struct {
		Type         string                 `json:"type"`
		Index        int                    `json:"index"`
		BlockID      string                 `json:"block_id"`
		ContentBlock workspace.ContentBlock `json:"content_block"`
	}
	evBlockDelta struct {
		Type    string    `json:"type"`
		Index   int       `json:"index"`
		BlockID string    `json:"block_id"`
		Delta   textDelta `json:"delta"`
	}
	textDelta struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	evBlockStop struct {
		Type    string `json:"type"`
		Index   int    `json:"index"`
		BlockID string `json:"block_id"`
	}
	evMessageDelta struct {
		Type  string       `json:"type"`
		Delta messageDelta `json:"delta"`
	}
	messageDelta struct {
		StopReason string          `json:"stop_reason"`
		Usage      workspace.Usage `json:"usage"`
	}
	evError struct {
		Type  string                `json:"type"`
		Error workspace.ErrorDetail `json:"error"`
	}
	evBare struct {
		Type string `json:"type"`
	}
)

// handleStream serves GET /interaction/{id}/stream as SSE. The events are
// message_start, content_block_start, content_block_delta (text_delta),
// content_block_stop, message_delta (stop_reason and usage inside delta) and
// message_stop; before the text block, a thinking block (thinking_delta)
// when the request asked for thinking and a content_block_synthetic source
// block when it asked for citations; an interaction that ends in Error sends an error event
// instead of the content block. While the interaction is processing, each
// delta is sent when it is produced and a ping is sent on connecting and
// every PingInterval of silence; a finished interaction replays in full at
// once (Compat.FinishedStream: or closes at once, or answers 409). A
// CutStream fault closes the connection after about half the deltas.
func (s *Server) handleStream(w http.ResponseWriter, r *http.Request) *httpError {
	s.mu.Lock()
	in, e := s.interactionLocked(r)
	if e != nil {
		s.mu.Unlock()
		return e
	}
	s.refreshLocked(in)
	if s.closed {
		s.mu.Unlock()
		return errorf(http.StatusServiceUnavailable, "simulator is shutting down")
	}
	processing := in.state == workspace.StateProcessing
	if !processing {
		switch s.compat.FinishedStream {
		case FinishedStream409:
			s.mu.Unlock()
			return errorf(http.StatusConflict, "interaction %q has finished (state %s); its stream is over", in.id, in.state)
		case FinishedStreamClose:
			s.mu.Unlock()
			w.Header().Set("Content-Type", "text/event-stream")
			w.Header().Set("Cache-Control", "no-cache")
			w.WriteHeader(http.StatusOK)
			return nil
		}
	}
	// The stream keeps its own reference to the deltas and to done: the
	// interaction lets go of them when it finishes.
	chunks := in.chunks()
	var done <-chan struct{}
	if processing {
		done = in.flight.done
	}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()

	s.knobMu.Lock()
	cut := s.rng.Float64() < s.faults.CutStream
	ping := s.ping
	s.knobMu.Unlock()
	if cut {
		s.countFault("cut_stream")
	}

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	f, _ := w.(http.Flusher)
	ev := &sseWriter{w: w, f: f}

	blockID := in.msgID + "_b0"
	if err := ev.send("message_start", evMessageStart{Type: "message_start", Message: workspace.MessageOutput{
		ID: in.msgID, Role: workspace.RoleAssistant, Created: workspace.Count(in.created.Unix()), Model: Model,
		Content: []workspace.ContentBlock{},
		Usage:   &workspace.Usage{InputTokens: in.ans.usage.InputTokens},
	}}); err != nil {
		return &httpError{}
	}
	if processing {
		if ev.send("ping", evBare{Type: "ping"}) != nil {
			return &httpError{}
		}
	}
	cutAfter := len(chunks) / 2

	pinger := time.NewTicker(ping)
	defer pinger.Stop()
	wait := time.NewTimer(time.Hour)
	defer wait.Stop()
	started := false
	for k := 0; ; k++ {
		// How many chunks may be sent, and when the next one is due.
		s.mu.Lock()
		s.refreshLocked(in)
		final := in.flight == nil
		limit := len(chunks)
		if final {
			limit = in.nChunks
		}
		var due time.Time
		if !final && k < limit {
			due = in.flight.chunkAt(k)
		}
		s.mu.Unlock()
		if cut && k == cutAfter {
			ev.flush() // the client has the first half when the connection drops
			panic(http.ErrAbortHandler)
		}
		if k >= limit {
			if !final {
				// Every chunk was sent; wait for the end (an Error fault).
				if !s.waitFor(r, done, pinger, ev, nil) {
					return &httpError{}
				}
				k--
				continue
			}
			break
		}
		if !final {
			if d := time.Until(due); d > 0 {
				wait.Reset(d)
				if !s.waitFor(r, done, pinger, ev, wait.C) {
					return &httpError{}
				}
				k-- // re-evaluate: the interaction may have been cancelled
				continue
			}
		}
		if !started {
			started = true
			if s.sendExtras(ev, in) != nil {
				return &httpError{}
			}
			if ev.send("content_block_start", evBlockStart{Type: "content_block_start", BlockID: blockID,
				ContentBlock: workspace.ContentBlock{Type: "text"}}) != nil {
				return &httpError{}
			}
		}
		if ev.send("content_block_delta", evBlockDelta{Type: "content_block_delta", BlockID: blockID,
			Delta: textDelta{Type: "text_delta", Text: chunks[k]}}) != nil {
			return &httpError{}
		}
		pinger.Reset(ping)
	}

	s.mu.Lock()
	state, stop, usage, errs := in.state, in.stopReason, in.usage, in.errors()
	s.mu.Unlock()
	if state == workspace.StateError {
		for _, e := range errs {
			if ev.send("error", evError{Type: "error", Error: e}) != nil {
				return &httpError{}
			}
		}
	} else {
		if !started {
			if s.sendExtras(ev, in) != nil {
				return &httpError{}
			}
			if ev.send("content_block_start", evBlockStart{Type: "content_block_start", BlockID: blockID,
				ContentBlock: workspace.ContentBlock{Type: "text"}}) != nil {
				return &httpError{}
			}
		}
		if ev.send("content_block_stop", evBlockStop{Type: "content_block_stop", BlockID: blockID}) != nil {
			return &httpError{}
		}
	}
	if ev.send("message_delta", evMessageDelta{Type: "message_delta", Delta: messageDelta{StopReason: stop, Usage: usage}}) != nil {
		return &httpError{}
	}
	_ = ev.send("message_stop", evBare{Type: "message_stop"})
	return nil
}

// waitFor blocks until timer fires (or, when timer is nil, done is closed),
// sending pings meanwhile. It reports false when the client went away or
// the simulator closed.
func (s *Server) waitFor(r *http.Request, done <-chan struct{}, pinger *time.Ticker, ev *sseWriter, timer <-chan time.Time) bool {
	ev.flush()
	for {
		select {
		case <-timer:
			return true
		case <-done:
			return true
		case <-pinger.C:
			if ev.send("ping", evBare{Type: "ping"}) != nil {
				return false
			}
			ev.flush()
		case <-r.Context().Done():
			return false
		case <-s.stop:
			return false
		}
	}
}
