package workspace

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"net/http"
)

// CreateInteraction sends a turn to a thread
// (POST /app/thread/{threadId}/interaction; the server answers 201). The
// ChatRequest goes in req.PGPT; req.ThreadID defaults to threadID, and a
// nil ArtifactIDs is sent as []. The returned interaction may still be
// Processing: follow it with WaitInteraction or StreamInteraction.
//
// Do not blindly retry a create that failed with a transport error: the
// interaction may exist. Tag requests with PGPT.CorrelationID and look for it
// with ListInteractions first.
func (c *Client) CreateInteraction(ctx context.Context, threadID string, req CreateInteractionRequest) (*Interaction, error) {
	t, err := seg("thread id", threadID)
	if err != nil {
		return nil, fmt.Errorf("workspace: create interaction: %w", err)
	}
	switch req.ThreadID {
	case "":
		req.ThreadID = threadID
	case threadID:
	default:
		return nil, fmt.Errorf("workspace: create interaction: request thread_id %q differs from thread %q", req.ThreadID, threadID)
	}
	if req.ArtifactIDs == nil {
		req.ArtifactIDs = []string{}
	}
	path, err := c.routePath(ctx, "/thread/"+t+"/interaction", "/interaction")
	if err != nil {
		return nil, fmt.Errorf("workspace: create interaction: %w", err)
	}
	var in Interaction
	if err := c.do(ctx, call{method: "POST", path: path, body: req, out: &in, kind: kindInteraction}); err != nil {
		return nil, err
	}
	return &in, nil
}

// ListInteractions returns one page of a thread's interactions
// (GET /app/thread/{threadId}/interaction).
func (c *Client) ListInteractions(ctx context.Context, threadID string, p PageParams) (*Page[Interaction], error) {
	t, err := seg("thread id", threadID)
	if err != nil {
		return nil, fmt.Errorf("workspace: list interactions: %w", err)
	}
	path, err := c.routePath(ctx, "/thread/"+t+"/interaction", "")
	if err != nil {
		return nil, fmt.Errorf("workspace: list interactions: %w", err)
	}
	var page Page[Interaction]
	if err := c.do(ctx, call{method: "GET", path: path, query: p.values(nil), out: &page, kind: kindPage}); err != nil {
		return nil, err
	}
	return &page, nil
}

// Interactions iterates over all of a thread's interactions, page after page
// until has_next_page is false (see Artifacts for the paging rules).
func (c *Client) Interactions(ctx context.Context, threadID string, p PageParams) iter.Seq2[Interaction, error] {
	return paginate(ctx, p, "interactions of thread "+threadID,
		func(ctx context.Context, p PageParams) (*Page[Interaction], error) {
			return c.ListInteractions(ctx, threadID, p)
		},
		func(i Interaction) string { return i.ID })
}

// FindInteraction looks through a thread's interactions for the one whose
// request carried pgpt.correlation_id == correlationID, and reports whether
// it found one. Use it before re-sending a create that failed without an
// answer: the first attempt may have created the interaction.
func (c *Client) FindInteraction(ctx context.Context, threadID, correlationID string) (*Interaction, bool, error) {
	if correlationID == "" {
		return nil, false, errors.New("workspace: find interaction: empty correlation id")
	}
	for in, err := range c.Interactions(ctx, threadID, PageParams{}) {
		if err != nil {
			return nil, false, err
		}
		if in.PGPT != nil && in.PGPT.CorrelationID == correlationID {
			return &in, true, nil
		}
	}
	return nil, false, nil
}

// GetInteraction returns an interaction (GET /app/interaction/{id}).
func (c *Client) GetInteraction(ctx context.Context, id string) (*Interaction, error) {
	p, err := seg("interaction id", id)
	if err != nil {
		return nil, fmt.Errorf("workspace: get interaction: %w", err)
	}
	path, err := c.routePath(ctx, "/interaction/"+p, "")
	if err != nil {
		return nil, fmt.Errorf("workspace: get interaction: %w", err)
	}
	var in Interaction
	if err := c.do(ctx, call{method: "GET", path: path, out: &in, kind: kindInteraction}); err != nil {
		return nil, err
	}
	return &in, nil
}

// DeleteInteraction deletes an interaction (DELETE /app/interaction/{id})
// and returns what the server answered; an empty answer gives an
// Interaction with only its ID.
func (c *Client) DeleteInteraction(ctx context.Context, id string) (*Interaction, error) {
	p, err := seg("interaction id", id)
	if err != nil {
		return nil, fmt.Errorf("workspace: delete interaction: %w", err)
	}
	path, err := c.routePath(ctx, "/interaction/"+p, "")
	if err != nil {
		return nil, fmt.Errorf("workspace: delete interaction: %w", err)
	}
	var in Interaction
	if err := c.do(ctx, call{method: "DELETE", path: path, out: &in, emptyOK: true, kind: kindInteraction}); err != nil {
		return nil, err
	}
	if in.ID == "" {
		in.ID = id
	}
	return &in, nil
}

// CancelInteraction asks the server to stop an interaction
// (POST /app/interaction/{id}/cancel, 204). When the interaction had already
// finished the server answers 409 and the error matches ErrAlreadyFinished
// (and is an *APIError): fetch the interaction for its real state.
func (c *Client) CancelInteraction(ctx context.Context, id string) error {
	p, err := seg("interaction id", id)
	if err != nil {
		return fmt.Errorf("workspace: cancel interaction: %w", err)
	}
	path, err := c.routePath(ctx, "/interaction/"+p+"/cancel", "")
	if err != nil {
		return fmt.Errorf("workspace: cancel interaction: %w", err)
	}
	err = c.do(ctx, call{method: "POST", path: path})
	if ae, ok := errors.AsType[*APIError](err); ok && ae.StatusCode == http.StatusConflict {
		ae.sentinel = ErrAlreadyFinished
	}
	return err
}
