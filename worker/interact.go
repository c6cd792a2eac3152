package worker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/threadmill/threadmill/pipelines"
	"github.com/threadmill/threadmill/runstore"
	"github.com/threadmill/threadmill/workspace"
)

// creating marks a turn whose interaction is being created: if the attempt
// dies before the id is checkpointed, the retry looks the interaction up by
// its correlation id before creating another.
const creating = runstore.Creating

// runThreadLockTTL bounds how long other items wait for a dead worker that
// took the lock to create a run's shared thread.
const runThreadLockTTL = time.Minute

// process validates the item's requests (once), then sends them: turns in
// one thread in thread mode, one-shot chats in chat mode. Progress is
// checkpointed after each step, so a retry resumes where this attempt
// stopped.
func (w *Worker) process(ctx context.Context, ir *itemRun) error {
	if !ir.ck.Validated {
		if err := w.validate(ctx, ir); err != nil {
			return err
		}
		ir.ck.Validated = true
		// Thread mode records validation with the thread id, one write
		// less; a retry that finds neither validates again, which is free.
		if ir.it.Mode == pipelines.ModeChat || ir.ck.ThreadID != "" {
			if err := w.store.CheckpointValidated(ctx, ir.rc.id, ir.it.Step, ir.it.Key); err != nil {
				return err
			}
		}
	}
	var err error
	if ir.it.Mode == pipelines.ModeChat {
		err = w.chat(ctx, ir)
	} else {
		err = w.thread(ctx, ir)
	}
	if err != nil || ir.step.OutputSchema == nil {
		return err
	}
	return w.structure(ctx, ir)
}

// validate sends every request of the item to /app/chat/validate. A 400 is
// a permanent failure carrying the server's message.
func (w *Worker) validate(ctx context.Context, ir *itemRun) error {
	for i, req := range ir.it.Requests {
		if err := w.api.ValidateChat(withRun(ctx, ir.rc), req); err != nil {
			err := fmt.Errorf("validate request %d of %d: %w", i+1, len(ir.it.Requests), err)
			if ae, ok := errors.AsType[*workspace.APIError](err); ok && ae.StatusCode == 400 {
				return permanent(err)
			}
			return err
		}
	}
	return nil
}

// CorrelationID is the pgpt.correlation_id sent with turn (0-based) of an
// item: "threadmill:<run>:<item key>:<turn>". A retry uses it to find an
// interaction created by an attempt that died before checkpointing it, and
// an operator can use it to find the interactions of an item.
func CorrelationID(runID, key string, turn int) string {
	return "threadmill:" + runID + ":" + key + ":" + strconv.Itoa(turn)
}

// thread sends the item's turns as interactions in its thread.
func (w *Worker) thread(ctx context.Context, ir *itemRun) error {
	rc, it := ir.rc, ir.it
	if ir.ck.ThreadID != "" {
		// A thread of an earlier attempt may be gone: deleted after the
		// run (thread.delete_after) before a retry of it, or by hand.
		if _, err := w.api.GetThread(withRun(ctx, rc), ir.ck.ThreadID); errorsIsNotFound(err) {
			ir.logger().Info("the item's thread is gone; it starts again in a new one", "thread", ir.ck.ThreadID)
			if it.ThreadPer == pipelines.PerRun {
				if err := w.store.ForgetRunThread(ctx, rc.id, it.Step, ir.ck.ThreadID); err != nil {
					return err
				}
			}
			ck, err := w.store.CheckpointThreadGone(ctx, rc.id, it.Step, it.Key, ir.ck)
			if err != nil {
				return err
			}
			ir.ck = ck
		} else if err != nil {
			return fmt.Errorf("check the thread %s of an earlier attempt: %w", ir.ck.ThreadID, err)
		}
	}
	if ir.ck.ThreadID == "" {
		id, err := w.threadFor(ctx, ir)
		if err != nil {
			return err
		}
		// The first turn's interaction is created next: mark it in the same
		// write (see creating).
		if err := w.store.CheckpointThread(ctx, rc.id, it.Step, it.Key, id, creating); err != nil {
			return err
		}
		ir.ck.ThreadID = id
		ir.firstMarked = true
	}
	for i, base := range it.Requests {
		// With output_schema the last turn may be followed by repairs:
		// it is checkpointed like the others.
		final := i == len(it.Requests)-1 && ir.step.OutputSchema == nil
		if err := w.threadTurn(ctx, ir, i, base, final); err != nil {
			return err
		}
	}
	return nil
}

// threadTurn sends turn i of an item (a request of the step, or a repair)
// as an interaction in the item's thread, resuming an interaction an
// earlier attempt created, and checkpoints the finished turn unless it is
// final (the item's record follows at once).
func (w *Worker) threadTurn(ctx context.Context, ir *itemRun, i int, base workspace.ChatRequest, final bool) error {
	rc, it := ir.rc, ir.it
	if _, done := ir.ck.Turns[i]; done {
		return nil
	}
	req := base
	req.CorrelationID = CorrelationID(rc.id, it.Key, i)
	id := ir.ck.Pending[i]
	if id == creating {
		found, err := w.lookUp(ctx, ir, i, req.CorrelationID)
		if err != nil {
			return err
		}
		id = found
	}
	var in *workspace.Interaction
	if id == "" {
		created, err := w.createInteraction(ctx, ir, i, req)
		if err != nil {
			return err
		}
		in, id = created, created.ID
	}
	if in == nil || !in.Terminal() {
		got, err := w.api.WaitInteraction(withRun(ctx, rc), id)
		if errorsIsNotFound(err) {
			return w.vanished(ctx, ir, i, id, req.CorrelationID, err)
		}
		if err != nil {
			return fmt.Errorf("wait for interaction %s (turn %d): %w", id, i+1, err)
		}
		in = got
	}
	if in.State == workspace.StateError {
		if err := w.store.CheckpointDiscard(ctx, rc.id, it.Step, it.Key, i, id, in.Usage()); err != nil {
			return err
		}
		ir.ck.Discarded = append(ir.ck.Discarded, id)
		ir.ck.Wasted = ir.ck.Wasted.Add(in.Usage())
		return newInteractionError(in)
	}
	turn := runstore.Turn{InteractionID: id, Output: in.Output(), Usage: in.Usage(), StopReason: in.StopReason()}
	if in.AssistantOutput != nil {
		turn.Citations, turn.Sources = workspace.References(in.AssistantOutput.Content)
	}
	// The final turn needs no checkpoint: the item's record follows at
	// once, and a retry in between finds the finished interaction by
	// its pending id.
	if !final {
		if err := w.store.CheckpointTurn(ctx, rc.id, it.Step, it.Key, i, turn); err != nil {
			return err
		}
	}
	ir.ck.Turns[i] = turn
	return nil
}

// createInteraction creates a turn's interaction and checkpoints its id
// before anyone waits on it.
func (w *Worker) createInteraction(ctx context.Context, ir *itemRun, turn int, req workspace.ChatRequest) (*workspace.Interaction, error) {
	rc, it := ir.rc, ir.it
	if turn != 0 || !ir.firstMarked {
		if err := w.store.CheckpointPending(ctx, rc.id, it.Step, it.Key, turn, creating); err != nil {
			return nil, err
		}
	}
	body := workspace.CreateInteractionRequest{
		ThreadID:     ir.ck.ThreadID,
		PGPT:         req,
		ArtifactIDs:  it.ArtifactIDs,
		AllArtifacts: it.AllArtifacts,
		Agent:        it.Agent,
	}
	if body.ArtifactIDs == nil {
		body.ArtifactIDs = []string{}
	}
	in, err := w.api.CreateInteraction(withRun(ctx, rc), ir.ck.ThreadID, body)
	if err != nil {
		err = fmt.Errorf("create interaction (turn %d): %w", turn+1, err)
		if _, held := errors.AsType[*PacedError](err); held || workspace.IsDefiniteRejection(err) {
			// The server answered and created nothing, or the request was
			// never sent (held back by a pause): forget the mark.
			if cerr := w.store.CheckpointPending(context.WithoutCancel(ctx), rc.id, it.Step, it.Key, turn, ""); cerr != nil {
				ir.logger().Warn("could not clear the interaction checkpoint", "error", cerr)
			}
			return nil, err
		}
		// Ambiguous (a proxy's 5xx, a timeout, a reset, a cut body): the
		// interaction may exist. The mark stays, so that no attempt creates
		// again before looking it up; look now.
		if shuttingDown(ctx) {
			// Stopping (or canceled): the next attempt, or the cancel,
			// looks it up.
			return nil, err
		}
		ir.logger().Warn("create interaction got no clear answer; looking it up by correlation id", "turn", turn, "error", err)
		id, lerr := w.lookUp(ctx, ir, turn, req.CorrelationID)
		if lerr != nil || id == "" {
			// Not (yet) visible: the next attempt looks again before it
			// creates.
			return nil, err
		}
		return &workspace.Interaction{ID: id, State: workspace.StateProcessing}, nil
	}
	if err := w.store.CheckpointPending(ctx, rc.id, it.Step, it.Key, turn, in.ID); err != nil {
		return nil, err
	}
	ir.ck.Pending[turn] = in.ID
	return in, nil
}

// lookUp looks through the item's thread for the interaction of a turn by
// its correlation id, for a turn marked as being created by an attempt that
// got no clear answer. A found interaction is checkpointed as the turn's
// pending one; "" means there is none, and the turn may be created.
func (w *Worker) lookUp(ctx context.Context, ir *itemRun, turn int, corr string) (string, error) {
	rc, it := ir.rc, ir.it
	in, found, err := w.api.FindInteraction(withRun(ctx, rc), ir.ck.ThreadID, corr)
	if err != nil {
		return "", fmt.Errorf("look for the interaction of turn %d created by an earlier attempt: %w", turn+1, err)
	}
	if !found {
		return "", nil
	}
	ir.logger().Info("resuming an interaction created by an earlier attempt", "interaction", in.ID, "turn", turn)
	if err := w.store.CheckpointPending(ctx, rc.id, it.Step, it.Key, turn, in.ID); err != nil {
		return "", err
	}
	ir.ck.Pending[turn] = in.ID
	return in.ID, nil
}

// vanished handles an interaction that still answers 404 after the client's
// lag grace: if the thread lists an interaction with the turn's correlation
// id, the item resumes that one on its next attempt; otherwise the
// interaction is gone for good, its id is kept in the item's record (it may
// have been paid for) and the next attempt creates a new one.
func (w *Worker) vanished(ctx context.Context, ir *itemRun, turn int, id, corr string, cause error) error {
	rc, it := ir.rc, ir.it
	found, err := w.lookUp(ctx, ir, turn, corr)
	if err != nil {
		return fmt.Errorf("interaction %s of turn %d not found (%v), and %w", id, turn+1, cause, err)
	}
	if found != "" {
		// Not %w: the 404 is not the item's verdict; the retry resumes.
		return fmt.Errorf("interaction %s of turn %d answers 404 but is listed in its thread as %s; the retry resumes it", id, turn+1, found)
	}
	if err := w.store.CheckpointDiscard(ctx, rc.id, it.Step, it.Key, turn, id, workspace.Usage{}); err != nil {
		return err
	}
	ir.ck.Discarded = append(ir.ck.Discarded, id)
	ir.logger().Warn("interaction vanished: not found and not listed in its thread; the retry creates a new one", "interaction", id, "turn", turn)
	// Not %w: the 404 is the old interaction's, the retry is fine.
	return fmt.Errorf("interaction %s of turn %d disappeared (%v); the retry creates a new one", id, turn+1, cause)
}

// threadFor returns the thread of an item: a new one per item, or the step's
// shared thread (thread.per: run), created once across the fleet. Threads of
// a step with thread.delete_after are remembered for deletion.
func (w *Worker) threadFor(ctx context.Context, ir *itemRun) (string, error) {
	rc, it := ir.rc, ir.it
	create := func(ctx context.Context) (string, error) {
		req := workspace.CreateThreadRequest{Name: it.ThreadName, Visibility: it.ThreadVisibility}
		if req.Name == "" {
			req.Name = pipelines.DefaultThreadName(rc.spec.Pipeline.Name, it.Step, rc.id, it.Artifact, it.ThreadPer)
		}
		if req.Visibility == "" {
			req.Visibility = workspace.VisibilityPrivate
		}
		th, err := w.api.CreateThread(withRun(ctx, rc), rc.spec.Pipeline.Workspace.Project, req)
		if err != nil {
			return "", fmt.Errorf("create thread: %w", err)
		}
		if ir.step.Thread.DeleteAfter {
			if err := w.store.AddThread(ctx, rc.id, th.ID); err != nil {
				return "", err
			}
		}
		return th.ID, nil
	}
	if it.ThreadPer == pipelines.PerRun {
		return w.store.RunThread(ctx, rc.id, it.Step, runThreadLockTTL, create)
	}
	return create(ctx)
}

// chat sends the item's turns as one-shot chats. The chat endpoint keeps no
// history, so each turn carries the earlier turns and their answers. A chat
// has no id to resume: an attempt that dies after the server answered but
// before the checkpoint sends that turn again.
func (w *Worker) chat(ctx context.Context, ir *itemRun) error {
	var history []workspace.Message
	for i, base := range ir.it.Requests {
		turn, err := w.chatTurn(ctx, ir, i, base, history)
		if err != nil {
			return err
		}
		history = append(history, base.Messages...)
		history = append(history, assistantText(turn.Output))
	}
	return nil
}

// chatTurn sends turn i of an item as a one-shot chat carrying history
// (the earlier turns and their answers) before base's messages, and
// checkpoints it; a finished turn is returned as it is.
func (w *Worker) chatTurn(ctx context.Context, ir *itemRun, i int, base workspace.ChatRequest, history []workspace.Message) (runstore.Turn, error) {
	rc, it := ir.rc, ir.it
	if turn, done := ir.ck.Turns[i]; done {
		return turn, nil
	}
	req := base
	req.CorrelationID = CorrelationID(rc.id, it.Key, i)
	req.Messages = append(append([]workspace.Message{}, history...), base.Messages...)
	resp, err := w.api.Chat(withRun(ctx, rc), req)
	if err != nil {
		return runstore.Turn{}, fmt.Errorf("chat (turn %d): %w", i+1, err)
	}
	turn := runstore.Turn{Output: resp.Text(), StopReason: resp.StopReason}
	turn.Citations, turn.Sources = workspace.References(resp.Content)
	if resp.Usage != nil {
		turn.Usage = *resp.Usage
	} else {
		// The answer has no usage (workspace-api.md §7.1): count an
		// estimate rather than zero, which a budget could not see.
		turn.Usage, turn.UsageEstimated = estimateChatUsage(req, turn.Output), true
		rc.estimatedOnce.Do(func() {
			rc.log.Warn("the chat answer carries no usage: usage is estimated (one token per four bytes of prompt and answer) and marked usage_estimated in the results", "step", it.Step)
		})
	}
	if err := w.store.CheckpointTurn(ctx, rc.id, it.Step, it.Key, i, turn); err != nil {
		return runstore.Turn{}, err
	}
	ir.ck.Turns[i] = turn
	return turn, nil
}

// estimateChatUsage estimates the usage of a one-shot chat whose answer
// carried none: workspace.EstimateTokens of the system text and every
// message sent, and of the answer.
func estimateChatUsage(req workspace.ChatRequest, answer string) workspace.Usage {
	var in int64
	if req.System != nil {
		in += workspace.EstimateTokens(req.System.Text)
	}
	for _, m := range req.Messages {
		for _, c := range m.Content {
			in += workspace.EstimateTokens(c.Text)
		}
	}
	return workspace.Usage{InputTokens: workspace.Count(in), OutputTokens: workspace.Count(workspace.EstimateTokens(answer))}
}

func assistantText(s string) workspace.Message {
	return workspace.Message{Role: workspace.RoleAssistant, Content: []workspace.ContentBlock{workspace.TextBlock(s)}}
}
