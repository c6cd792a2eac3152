package simulator

import (
	"slices"
	"strings"
	"time"

	"github.com/threadmill/threadmill/workspace"
)

// interaction is one turn of a thread. Its answer is computed at creation;
// its timeline says when each chunk of the answer is produced.
type interaction struct {
	id        string
	msgID     string
	thread    *thread
	created   time.Time // Config.Now at creation, for created_at
	req       workspace.ChatRequest
	userInput *workspace.Message
	artIDs    []string
	all       bool
	agent     string

	ans     answer
	chunks  []string
	start   time.Time     // real clock at creation
	firstAt time.Duration // time to first token, jitter included
	perTok  time.Duration // per output token
	cumTok  []int64       // estimate of chunks[0..k] joined
	fails   bool          // ends in Error (fault injection)
	timer   *time.Timer   // completion timer, nil when finished
	done    chan struct{} // closed when the interaction reaches a final state
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
	errs       []workspace.ErrorDetail
}

// chunkAt returns when chunk k is produced (real clock).
func (in *interaction) chunkAt(k int) time.Time {
	return in.start.Add(in.firstAt + time.Duration(in.cumTok[k])*in.perTok)
}

// completeAt returns when the interaction completes (real clock).
func (in *interaction) completeAt() time.Time {
	return in.start.Add(in.firstAt + time.Duration(in.ans.usage.OutputTokens)*in.perTok)
}

// splitChunks cuts an answer into stream deltas: whole words (with their
// trailing space or newline), grouped until a chunk holds at least 16 bytes.
func splitChunks(text string) (chunks []string, cum []int64) {
	var cur strings.Builder
	var sofar strings.Builder
	flush := func() {
		if cur.Len() == 0 {
			return
		}
		chunks = append(chunks, cur.String())
		sofar.WriteString(cur.String())
		cum = append(cum, workspace.EstimateTokens(sofar.String()))
		cur.Reset()
	}
	start := 0
	for i := 0; i < len(text); i++ {
		if text[i] == ' ' || text[i] == '\n' {
			cur.WriteString(text[start : i+1])
			start = i + 1
			if cur.Len() >= 16 {
				flush()
			}
		}
	}
	cur.WriteString(text[start:])
	flush()
	return chunks, cum
}

// finishLocked moves a processing interaction to its final state. reason is
// "" for a normal end, or StopReasonCancelled. It is idempotent and must be
// called with s.mu held.
func (s *Server) finishLocked(in *interaction, reason string, at time.Time) {
	if in.state != workspace.StateProcessing {
		return
	}
	if in.timer != nil {
		in.timer.Stop()
		in.timer = nil
	}
	switch {
	case reason == workspace.StopReasonCancelled:
		n := 0
		for n < len(in.chunks) && !in.chunkAt(n).After(at) {
			n++
		}
		in.state = workspace.StateCompleted
		in.stopReason = workspace.StopReasonCancelled
		in.nChunks = n
		in.text = strings.Join(in.chunks[:n], "")
		in.usage = workspace.Usage{
			InputTokens:  in.ans.usage.InputTokens,
			OutputTokens: workspace.Count(workspace.EstimateTokens(in.text)),
		}
		switch s.compat.CancelEnd {
		case CancelEndError:
			in.state = workspace.StateError
			in.errs = []workspace.ErrorDetail{{Type: "cancelled", Message: "the interaction was cancelled"}}
		case CancelEndStop:
			in.stopReason = workspace.StopReasonStop
		}
		s.counters.InteractionsCancelled++
	case in.fails:
		in.state = workspace.StateError
		in.stopReason = workspace.StopReasonError
		in.usage = workspace.Usage{InputTokens: in.ans.usage.InputTokens}
		in.errs = []workspace.ErrorDetail{{Type: "api_error", Message: "simulated generation failure (fault injection)"}}
		s.counters.InteractionsFailed++
	default:
		in.state = workspace.StateCompleted
		in.stopReason = in.ans.stopReason
		in.nChunks = len(in.chunks)
		in.text = in.ans.text
		in.usage = in.ans.usage
		s.counters.InteractionsCompleted++
	}
	s.counters.TokensIn += int64(in.usage.InputTokens)
	s.counters.TokensOut += int64(in.usage.OutputTokens)
	close(in.done)
}

// refreshLocked completes an interaction whose completion time has passed
// (the timer may not have fired yet, or may have been stopped by Close).
func (s *Server) refreshLocked(in *interaction) {
	if in.state == workspace.StateProcessing && !time.Now().Before(in.completeAt()) {
		s.finishLocked(in, "", time.Now())
	}
}

// viewLocked returns the InteractionDTO.
func (s *Server) viewLocked(in *interaction) workspace.Interaction {
	s.refreshLocked(in)
	pgpt := in.req
	user := s.user()
	dto := workspace.Interaction{
		ID:           in.id,
		ProjectID:    s.projectID,
		ThreadID:     in.thread.dto.ID,
		State:        in.state,
		UserInput:    in.userInput,
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
			Errors:     in.errs,
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

// Chats returns every answered one-shot chat, in order.
func (s *Server) Chats() []ChatRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.store.chats)
}
