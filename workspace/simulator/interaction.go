package simulator

import (
	"encoding/json"
	"slices"
	"strings"
	"time"

	"github.com/threadmill/threadmill/workspace"
)

// interaction is one turn of a thread. Its answer is computed at creation;
// its timeline says when each chunk of the answer is produced. A finished
// interaction keeps only what its reads show: the request, the answer and
// its final state; what only generation needs (the timeline, the chunks,
// the timer) goes with flight when it finishes.
type interaction struct {
	id      string
	msgID   string
	thread  *thread
	created time.Time // Config.Now at creation, for created_at
	// req is the request (pgpt) as JSON: a decoded ChatRequest takes
	// three times the room, and only reads need it (see request).
	req      []byte
	wantJSON bool // the request asks for a JSON answer (response_format)
	artIDs   []string
	all      bool

	ans     answer
	flight  *flight // nil once finished
	deleted bool
	// hiddenUntil (real clock) is when a lagging replica first shows the
	// interaction: before it, reads answer 404 (Faults.ReplicaLag).
	hiddenUntil time.Time

	// Final state, set once by finishLocked.
	state      string
	stopReason string
	nChunks    int // chunks of the answer in the final output
	text       string
	usage      workspace.Usage
}

// flight is what an interaction needs while it is processing: when each
// chunk of its answer is produced, how it ends, and the timer that ends it.
type flight struct {
	chunks  []string
	start   time.Time     // real clock at creation
	firstAt time.Duration // time to first token, jitter included
	perTok  time.Duration // per output token
	cumTok  []int64       // estimate of chunks[0..k] joined
	fails   bool          // ends in Error (fault injection)
	timer   *time.Timer   // completion timer, nil when none runs
	done    chan struct{} // closed when the interaction reaches a final state
}

// request returns the request the interaction was created with.
func (in *interaction) request() workspace.ChatRequest {
	var req workspace.ChatRequest
	if err := json.Unmarshal(in.req, &req); err != nil {
		panic("simulator: a stored request does not decode: " + err.Error()) // it was encoded from a ChatRequest
	}
	return req
}

// errors returns the errors of an interaction that ended in Error: a
// cancellation (Compat.CancelEnd) or an injected failure.
func (in *interaction) errors() []workspace.ErrorDetail {
	switch {
	case in.state != workspace.StateError:
		return nil
	case in.stopReason == workspace.StopReasonCancelled:
		return []workspace.ErrorDetail{{Type: "cancelled", Message: "the interaction was cancelled"}}
	default:
		return []workspace.ErrorDetail{{Type: "api_error", Message: "simulated generation failure (fault injection)"}}
	}
}

// chunkAt returns when chunk k is produced (real clock).
func (f *flight) chunkAt(k int) time.Time {
	return f.start.Add(f.firstAt + time.Duration(f.cumTok[k])*f.perTok)
}

// completeAt returns when the interaction completes (real clock).
func (f *flight) completeAt(outputTokens workspace.Count) time.Time {
	return f.start.Add(f.firstAt + time.Duration(outputTokens)*f.perTok)
}

// chunks returns the stream deltas of the interaction's whole answer: the
// flight's while it is processing, cut again from the answer (the same
// cut) once it has finished.
func (in *interaction) chunks() []string {
	if in.flight != nil {
		return in.flight.chunks
	}
	return splitChunks(in.ans.text)
}

// splitChunks cuts an answer into stream deltas: whole words (with their
// trailing space or newline), grouped until a chunk holds at least 16 bytes.
func splitChunks(text string) []string {
	var chunks []string
	start, cur := 0, 0 // the chunk being built is text[cur:start]
	for i := 0; i < len(text); i++ {
		if text[i] == ' ' || text[i] == '\n' {
			start = i + 1
			if start-cur >= 16 {
				chunks = append(chunks, text[cur:start])
				cur = start
			}
		}
	}
	if cur < len(text) {
		chunks = append(chunks, text[cur:])
	}
	return chunks
}

// cumTokens returns, for each chunk, the token estimate of the chunks up to
// it joined.
func cumTokens(chunks []string) []int64 {
	cum := make([]int64, len(chunks))
	var sofar strings.Builder
	for k, c := range chunks {
		sofar.WriteString(c)
		cum[k] = workspace.EstimateTokens(sofar.String())
	}
	return cum
}

// finishLocked moves a processing interaction to its final state. reason is
// "" for a normal end, or StopReasonCancelled. It is idempotent and must be
// called with s.mu held.
func (s *Server) finishLocked(in *interaction, reason string, at time.Time) {
	if in.state != workspace.StateProcessing {
		return
	}
	f := in.flight
	if f.timer != nil {
		f.timer.Stop()
	}
	switch {
	case reason == workspace.StopReasonCancelled:
		n := 0
		for n < len(f.chunks) && !f.chunkAt(n).After(at) {
			n++
		}
		in.state = workspace.StateCompleted
		in.stopReason = workspace.StopReasonCancelled
		in.nChunks = n
		in.text = strings.Join(f.chunks[:n], "")
		in.usage = workspace.Usage{
			InputTokens:  in.ans.usage.InputTokens,
			OutputTokens: workspace.Count(workspace.EstimateTokens(in.text)),
		}
		switch s.compat.CancelEnd {
		case CancelEndError:
			in.state = workspace.StateError // errors: cancelled
		case CancelEndStop:
			in.stopReason = workspace.StopReasonStop
		}
		s.counters.InteractionsCancelled++
	case f.fails:
		in.state = workspace.StateError
		in.stopReason = workspace.StopReasonError // errors: api_error
		in.usage = workspace.Usage{InputTokens: in.ans.usage.InputTokens}
		s.counters.InteractionsFailed++
	default:
		in.state = workspace.StateCompleted
		in.stopReason = in.ans.stopReason
		in.nChunks = len(f.chunks)
		in.text = in.ans.text
		in.usage = in.ans.usage
		s.counters.InteractionsCompleted++
	}
	s.counters.TokensIn += int64(in.usage.InputTokens)
	s.counters.TokensOut += int64(in.usage.OutputTokens)
	// Streams and creates that wait took their own reference to done and
	// to the chunks: what is left of the flight can go.
	in.flight = nil
	close(f.done)
}

// refreshLocked completes an interaction whose completion time has passed
// (the timer may not have fired yet, or may have been stopped by Close).
func (s *Server) refreshLocked(in *interaction) {
	if in.flight != nil && !time.Now().Before(in.flight.completeAt(in.ans.usage.OutputTokens)) {
		s.finishLocked(in, "", time.Now())
	}
}

// viewLocked returns the InteractionDTO.
func (s *Server) viewLocked(in *interaction) workspace.Interaction {
	s.refreshLocked(in)
	pgpt := in.request()
	user := s.user()
	dto := workspace.Interaction{
		ID:           in.id,
		ProjectID:    s.projectID,
		ThreadID:     in.thread.dto.ID,
		State:        in.state,
		UserInput:    lastUserMessage(pgpt),
		ArtifactIDs:  in.artIDs,
		AllArtifacts: in.all,
		CreatedAt:    in.created.UTC().Format(time.RFC3339Nano),
		CreatedBy:    &user,
		PGPT:         &pgpt,
	}
	if in.state != workspace.StateProcessing {
		usage := in.usage
		out := &workspace.MessageOutput{
			ID:         in.msgID,
			Role:       workspace.RoleAssistant,
			Created:    workspace.Count(in.created.Unix()),
			Model:      Model,
			StopReason: in.stopReason,
			Content:    []workspace.ContentBlock{},
			Usage:      &usage,
			Errors:     in.errors(),
		}
		switch {
		case in.state == workspace.StateCompleted && in.stopReason != workspace.StopReasonCancelled:
			out.Content = in.ans.content(in.text)
		case in.state == workspace.StateCompleted && in.text != "":
			out.Content = []workspace.ContentBlock{workspace.TextBlock(in.text)}
		}
		dto.AssistantOutput = out
	}
	return dto
}

// lastUserMessage returns the last user message of req, nil when there is
// none.
func lastUserMessage(req workspace.ChatRequest) *workspace.Message {
	for i := len(req.Messages) - 1; i >= 0; i-- {
		if m := &req.Messages[i]; m.Role == workspace.RoleUser {
			return m
		}
	}
	return nil
}

// Interactions returns every interaction created so far, in creation
// order, deleted ones included, as GET /interaction/{id} shows them.
func (s *Server) Interactions() []workspace.Interaction {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]workspace.Interaction, 0, len(s.store.interactionOrder))
	for _, in := range s.store.interactionOrder {
		out = append(out, s.viewLocked(in))
	}
	return out
}

// ChatRecord is one answered POST /app/chat: the request as decoded and the
// answer sent.
type ChatRecord struct {
	Request  workspace.ChatRequest
	Response workspace.ChatResponse
}

// ChatsKept is how many answered chats Chats remembers: a chat cannot be
// read back through the API, so the simulator keeps only the most recent
// ones, for tests, and a long run of chats does not grow it.
const ChatsKept = 1000

// Chats returns the answered one-shot chats in order, the last ChatsKept
// of them.
func (s *Server) Chats() []ChatRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	chats := s.store.chats
	return slices.Clone(chats[max(0, len(chats)-ChatsKept):])
}
