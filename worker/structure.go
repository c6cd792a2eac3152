package worker

import (
	"context"
	"fmt"
	"strings"

	"github.com/threadmill/threadmill/pipelines"
	"github.com/threadmill/threadmill/structured"
	"github.com/threadmill/threadmill/workspace"
)

// maxQuotedProblems bounds the validation problems a repair turn quotes
// and a failed item's error lists.
const maxQuotedProblems = 10

// OutputSchemaError is the failure of an item whose answer still did not
// match its step's output_schema after the repair turns the step allows.
type OutputSchemaError struct {
	// Repairs is the number of repair turns sent.
	Repairs int
	// Problems are the last answer's problems.
	Problems []structured.Problem
}

// Error names the repairs and the problems.
func (e *OutputSchemaError) Error() string {
	return fmt.Sprintf("the answer does not match output_schema after %d repair turn(s): %s", e.Repairs, quoteProblems(e.Problems, "; "))
}

// quoteProblems joins at most maxQuotedProblems problems.
func quoteProblems(probs []structured.Problem, sep string) string {
	var parts []string
	for i, p := range probs {
		if i == maxQuotedProblems {
			parts = append(parts, fmt.Sprintf("(and %d more)", len(probs)-i))
			break
		}
		parts = append(parts, p.String())
	}
	return strings.Join(parts, sep)
}

// structure checks the item's last answer against the step's output_schema
// (the JSON found in its text, see structured.Extract). An answer that
// does not match gets up to max_repairs repair turns, each quoting the
// problems: in thread mode a new interaction in the item's thread; in chat
// mode a new one-shot chat carrying the whole conversation so far and the
// repair message (a chat has no thread to continue). Repair turns are
// numbered after the step's requests, checkpointed, billed and recorded
// like them, so a retry resumes where the attempt stopped. The valid
// value is kept for the item's record (ir.json); an answer still invalid
// after the last repair fails the item for good with the problems.
func (w *Worker) structure(ctx context.Context, ir *itemRun) error {
	sch, err := ir.step.OutputSchema.Compile()
	if err != nil {
		return permanent(fmt.Errorf("output_schema: %w", err))
	}
	reqs := ir.it.Requests
	n := len(reqs)
	last := n - 1
	var history []workspace.Message
	if ir.it.Mode == pipelines.ModeChat {
		for i, r := range reqs {
			history = append(history, r.Messages...)
			history = append(history, assistantText(ir.ck.Turns[i].Output))
		}
	}
	for k := 0; ; k++ {
		raw, probs := sch.Check(ir.ck.Turns[last].Output)
		if len(probs) == 0 {
			ir.json = raw
			return nil
		}
		if k >= ir.step.Repairs() {
			return permanent(&OutputSchemaError{Repairs: k, Problems: probs})
		}
		i := n + k
		req := repairRequest(reqs[n-1], probs)
		if _, done := ir.ck.Turns[i]; !done {
			ir.logger().Info("the answer does not match output_schema; sending a repair turn", "repair", k+1, "problems", len(probs))
		}
		if ir.it.Mode == pipelines.ModeChat {
			turn, err := w.chatTurn(ctx, ir, i, req, history)
			if err != nil {
				return err
			}
			history = append(history, req.Messages...)
			history = append(history, assistantText(turn.Output))
		} else if err := w.threadTurn(ctx, ir, i, req, false); err != nil {
			return err
		}
		last = i
	}
}

// repairRequest is the repair turn after an answer with problems: the
// step's last request (its system prompt, sampling settings and
// response_format) with one user message quoting the problems.
func repairRequest(base workspace.ChatRequest, probs []structured.Problem) workspace.ChatRequest {
	req := base
	req.Messages = []workspace.Message{workspace.UserText(RepairPrompt(probs))}
	return req
}

// RepairPrompt is the text of a repair turn: the validation problems of
// the previous answer, and the request to answer again with the JSON only.
func RepairPrompt(probs []structured.Problem) string {
	return "Your previous answer does not match the required JSON Schema:\n- " +
		quoteProblems(probs, "\n- ") +
		"\nAnswer again with only the corrected JSON value, valid for the schema, and nothing else."
}
