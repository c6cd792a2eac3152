package workspace

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// StreamBlock is one content block assembled from a stream.
type StreamBlock struct {
	// ID is the block_id ("#<index>" when only an index was sent, empty
	// when the server sent neither).
	ID string
	// Type is the block's type from content_block_start or
	// content_block_synthetic ("text" when the block only got text deltas).
	Type string
	// Text is the block's text: its text deltas, or the text of a text
	// block delivered whole.
	Text string
}

// StreamResult is what a stream said about an interaction. The stream is
// not authoritative: GetInteraction is (WaitInteraction does both).
type StreamResult struct {
	// MessageID and Model come from message_start.
	MessageID, Model string
	// Blocks are the content blocks in the order they first appeared.
	Blocks []StreamBlock
	// StopReason comes from message_delta.
	StopReason string
	// Usage comes from message_delta (inside or beside its delta) or
	// message_start; nil when the stream carried none.
	Usage *Usage
	// Events counts the events read, pings included.
	Events int
	// Completed is true once message_stop (or done) was read.
	Completed bool
}

// Text concatenates the text of the blocks, in order.
func (r *StreamResult) Text() string {
	if r == nil {
		return ""
	}
	var b strings.Builder
	for _, bl := range r.Blocks {
		b.WriteString(bl.Text)
	}
	return b.String()
}

// assembler accumulates events into a StreamResult.
type assembler struct {
	res   StreamResult
	index map[string]int // block id -> position in res.Blocks
	texts []*strings.Builder
}

func (a *assembler) block(ev Event, typ string) int {
	id := ev.BlockID
	if id == "" && ev.Index != nil {
		id = "#" + strconv.Itoa(*ev.Index)
	}
	if i, ok := a.index[id]; ok {
		if a.res.Blocks[i].Type == "" {
			a.res.Blocks[i].Type = typ
		}
		return i
	}
	if a.index == nil {
		a.index = make(map[string]int)
	}
	a.index[id] = len(a.res.Blocks)
	a.res.Blocks = append(a.res.Blocks, StreamBlock{ID: id, Type: typ})
	a.texts = append(a.texts, new(strings.Builder))
	return len(a.res.Blocks) - 1
}

// add applies one event; it reports whether the stream is complete, or the
// server's error.
func (a *assembler) add(ev Event) (done bool, err error) {
	a.res.Events++
	switch ev.Type {
	case EventMessageStart:
		if m := ev.Message; m != nil {
			a.res.MessageID, a.res.Model = m.ID, m.Model
		}
		a.mergeUsage(ev.Usage)
	case EventContentBlockStart, EventContentBlockSynthetic:
		typ := ""
		if ev.Block != nil {
			typ = ev.Block.Type
		}
		i := a.block(ev, typ)
		if ev.Block != nil && ev.Block.Type == "text" && ev.Block.Text != "" {
			a.texts[i].WriteString(ev.Block.Text)
		}
	case EventContentBlockDelta:
		if ev.Delta == nil {
			return false, nil
		}
		if ev.Delta.Type == DeltaText || (ev.Delta.Type == "" && ev.Delta.Text != "") {
			i := a.block(ev, "text")
			a.texts[i].WriteString(ev.Delta.Text)
		} else {
			a.block(ev, "")
		}
	case EventMessageDelta:
		if ev.StopReason != "" {
			a.res.StopReason = ev.StopReason
		}
		a.mergeUsage(ev.Usage)
	case EventMessageStop, EventDone:
		return true, nil
	case EventError:
		d := ev.Error
		if d == nil {
			d = &ErrorDetail{}
		}
		return false, &StreamError{Type: d.Type, Message: d.Message}
	}
	return false, nil
}

// mergeUsage keeps the latest non-zero counters: message_start may carry the
// input tokens and message_delta the output tokens.
func (a *assembler) mergeUsage(u *Usage) {
	if u == nil {
		return
	}
	if a.res.Usage == nil {
		a.res.Usage = &Usage{}
	}
	if u.InputTokens != 0 {
		a.res.Usage.InputTokens = u.InputTokens
	}
	if u.OutputTokens != 0 {
		a.res.Usage.OutputTokens = u.OutputTokens
	}
}

func (a *assembler) result() *StreamResult {
	r := a.res
	r.Blocks = append([]StreamBlock(nil), a.res.Blocks...)
	for i := range r.Blocks {
		r.Blocks[i].Text = a.texts[i].String()
		if r.Blocks[i].Type == "" && r.Blocks[i].Text != "" {
			r.Blocks[i].Type = "text"
		}
	}
	return &r
}

// ReadStream reads an interaction stream from r under the limits l and
// assembles it: text per block (only text deltas and whole text blocks
// count), stop reason and usage. onEvent, when not nil, sees every event,
// pings and unknown types included. It returns when message_stop (or done)
// arrives. A stream that ends or breaks before it gives the partial result
// and an error matching ErrStreamIncomplete; an error event gives the partial result
// and a *StreamError.
func ReadStream(r io.Reader, l Limits, onEvent func(Event)) (*StreamResult, error) {
	er := NewEventReader(r, l)
	var a assembler
	for {
		ev, err := er.Next()
		if err == io.EOF {
			return a.result(), fmt.Errorf("%w (after %d events)", ErrStreamIncomplete, a.res.Events)
		}
		if err != nil {
			if er.ioErr { // the connection broke: the stream is cut short
				return a.result(), fmt.Errorf("%w (after %d events): %w", ErrStreamIncomplete, a.res.Events, err)
			}
			return a.result(), err
		}
		if onEvent != nil {
			onEvent(ev)
		}
		done, err := a.add(ev)
		if err != nil {
			return a.result(), err
		}
		if done {
			res := a.result()
			res.Completed = true
			return res, nil
		}
	}
}

// StreamInteraction follows an interaction's SSE stream
// (GET /app/interaction/{id}/stream) until message_stop and returns what it
// assembled; onEvent, when not nil, sees every event as it arrives. The
// per-call timeout does not apply; the caller's context and the idle timeout
// (WithStreamIdleTimeout) do. The stream's Limits (WithStreamLimits) count
// decoded bytes, a gzip stream included. Errors: *APIError for a non-2xx answer;
// *StreamError for an error event; a *RequestError matching
// ErrStreamIncomplete when the stream ends early, ErrBodyTooLarge when a limit
// is hit, ErrTimeout when it goes idle. The partial result is returned with
// the error when there is one.
func (c *Client) StreamInteraction(ctx context.Context, id string, onEvent func(Event)) (*StreamResult, error) {
	p, err := seg("interaction id", id)
	if err != nil {
		return nil, fmt.Errorf("workspace: stream interaction: %w", err)
	}
	path, err := c.routePath(ctx, "/interaction/"+p+"/stream", "")
	if err != nil {
		return nil, fmt.Errorf("workspace: stream interaction: %w", err)
	}
	k := call{method: "GET", path: path}
	fullPath := c.base.Path + k.path
	if err := ctx.Err(); err != nil {
		return nil, &RequestError{Method: k.method, Path: fullPath, Err: context.Cause(ctx)}
	}
	streamCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var idle *time.Timer
	if c.idleTimeout > 0 {
		idleErr := fmt.Errorf("%w: the stream sent nothing for %s", ErrTimeout, c.idleTimeout)
		idle = time.AfterFunc(c.idleTimeout, func() { cancel(idleErr) })
		defer idle.Stop()
	}
	resp, err := c.send(streamCtx, k, "text/event-stream")
	if err != nil {
		return nil, c.transportError(ctx, streamCtx, k.method, fullPath, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		body, err := c.readBody(ctx, streamCtx, resp, kindSmall, k.method, fullPath)
		if err != nil {
			return nil, err
		}
		return nil, c.apiError(k.method, fullPath, resp, body)
	}
	var raw io.Reader = resp.Body
	if idle != nil {
		raw = &idleReader{r: resp.Body, t: idle, d: c.idleTimeout}
	}
	// The stream limits count decoded bytes: a gzip stream the transport
	// left alone is decoded here, under the idle timeout.
	body, _, err := decodedBody(raw, resp.Header, resp.Uncompressed)
	if err != nil {
		if errors.Is(err, errUnsupportedEncoding) {
			return nil, &RequestError{Method: k.method, Path: fullPath, Err: fmt.Errorf("%d response: %w", resp.StatusCode, err)}
		}
		return nil, c.transportError(ctx, streamCtx, k.method, fullPath, fmt.Errorf("read %d response body: %w", resp.StatusCode, err))
	}
	if ct := resp.Header.Get("Content-Type"); ct != "" {
		if mt, _, _ := mime.ParseMediaType(ct); strings.Contains(mt, "html") {
			head, _ := io.ReadAll(io.LimitReader(body, 512))
			return nil, &RequestError{Method: k.method, Path: fullPath,
				Err: fmt.Errorf("%d response is not an event stream (content type %q): %s", resp.StatusCode, ct, snippet(head))}
		}
	}
	res, err := ReadStream(body, c.limits, onEvent)
	if err == nil {
		return res, nil
	}
	if se, ok := errors.AsType[*StreamError](err); ok {
		se.Path = fullPath
		return res, se
	}
	if ctx.Err() != nil || streamCtx.Err() != nil {
		return res, c.transportError(ctx, streamCtx, k.method, fullPath, err)
	}
	return res, &RequestError{Method: k.method, Path: fullPath, Err: err}
}

// idleReader pushes the idle deadline back on every read that brings bytes.
type idleReader struct {
	r io.Reader
	t *time.Timer
	d time.Duration
}

func (i *idleReader) Read(p []byte) (int, error) {
	n, err := i.r.Read(p)
	if n > 0 {
		i.t.Reset(i.d)
	}
	return n, err
}

// maxPollFailures is how many transient GET failures in a row polling
// tolerates.
const maxPollFailures = 5

// WaitInteraction follows an interaction until it is terminal and returns it
// as GET /app/interaction/{id} shows it, the authoritative state, output and
// usage. It reads the stream first; when the stream fails (cut, error event,
// not supported, not SSE), it falls back to polling GET with exponential
// backoff and jitter (WithPollInterval), tolerating up to 5 transient
// failures in a row. Usage, stop reason or output that the final GET lacks
// are filled in from the stream. A 404 is polled again for the lag grace
// (WithLagGrace), as replica lag. A 401/403 on the stream, a permanent error
// on GET (a 404 past the grace), or the end of ctx ends the wait with that
// error.
func (c *Client) WaitInteraction(ctx context.Context, id string) (*Interaction, error) {
	res, serr := c.StreamInteraction(ctx, id, nil)
	if serr != nil {
		if ctx.Err() != nil {
			return nil, serr
		}
		if ae, ok := errors.AsType[*APIError](serr); ok &&
			(ae.StatusCode == http.StatusUnauthorized || ae.StatusCode == http.StatusForbidden) {
			return nil, serr
		}
		c.logger.LogAttrs(ctx, slog.LevelDebug, "workspace stream failed; polling the interaction",
			slog.String("interaction", id), slog.String("error", serr.Error()))
	}
	in, err := c.pollInteraction(ctx, id)
	if err != nil {
		return nil, err
	}
	if serr == nil && res != nil {
		fillFromStream(in, res)
	}
	return in, nil
}

// fillFromStream completes a terminal interaction with what a complete
// stream said, for servers whose GET omits it.
func fillFromStream(in *Interaction, res *StreamResult) {
	if in.AssistantOutput == nil {
		in.AssistantOutput = &MessageOutput{ID: res.MessageID, Model: res.Model}
		for _, b := range res.Blocks {
			if b.Type == "text" {
				in.AssistantOutput.Content = append(in.AssistantOutput.Content, TextBlock(b.Text))
			}
		}
	}
	if in.AssistantOutput.Usage == nil && res.Usage != nil {
		u := *res.Usage
		in.AssistantOutput.Usage = &u
	}
	if in.AssistantOutput.StopReason == "" {
		in.AssistantOutput.StopReason = res.StopReason
	}
}

// pollInteraction GETs the interaction until it is terminal.
func (c *Client) pollInteraction(ctx context.Context, id string) (*Interaction, error) {
	delay := c.pollMin
	failures := 0
	start := c.now()
	for {
		in, err := c.GetInteraction(ctx, id)
		wait := delay
		switch {
		case err == nil:
			failures = 0
			if in.Terminal() {
				return in, nil
			}
		case errors.Is(err, ErrNotFound) && ctx.Err() == nil && c.now().Sub(start) < c.lagGrace:
			// Replica lag until proven otherwise: poll on, with backoff.
			c.logger.LogAttrs(ctx, slog.LevelDebug, "workspace interaction not found yet; polling",
				slog.String("interaction", id), slog.Duration("since", c.now().Sub(start)))
		case ctx.Err() != nil || IsPermanent(err):
			return nil, err
		default:
			failures++
			if failures >= maxPollFailures {
				return nil, fmt.Errorf("workspace: wait for interaction %s: %d failed polls in a row: %w", id, failures, err)
			}
			if ra, ok := RetryAfter(err); ok {
				wait = max(wait, ra)
			}
			c.logger.LogAttrs(ctx, slog.LevelDebug, "workspace poll failed",
				slog.String("interaction", id), slog.Int("failures", failures), slog.String("error", err.Error()))
		}
		if err := sleepCtx(ctx, jitter(wait)); err != nil {
			return nil, fmt.Errorf("workspace: wait for interaction %s: %w", id, err)
		}
		delay = min(delay*3/2, c.pollMax)
	}
}

// jitter spreads d over [0.8d, 1.2d).
func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// sleepCtx waits d or until ctx ends, returning its cause.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}
