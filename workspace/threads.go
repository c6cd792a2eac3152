package workspace

import (
	"context"
	"fmt"
)

// Me returns the user the token belongs to (GET /app/me). It is the preflight
// check of the token and org pair: a 401 or 403 here means the token or
// x-org is wrong.
func (c *Client) Me(ctx context.Context) (*User, error) {
	var u User
	if err := c.do(ctx, call{method: "GET", path: "/app/me", out: &u}); err != nil {
		return nil, err
	}
	return &u, nil
}

// CreateThread creates a thread in a project
// (POST /app/project/{projectId}/thread). An empty Visibility is sent as
// Private.
func (c *Client) CreateThread(ctx context.Context, projectID string, req CreateThreadRequest) (*Thread, error) {
	p, err := seg("project id", projectID)
	if err != nil {
		return nil, fmt.Errorf("workspace: create thread: %w", err)
	}
	if req.Visibility == "" {
		req.Visibility = VisibilityPrivate
	}
	var t Thread
	if err := c.do(ctx, call{method: "POST", path: "/app/project/" + p + "/thread", body: req, out: &t}); err != nil {
		return nil, err
	}
	return &t, nil
}

// ListThreads returns one page of a project's threads
// (GET /app/project/{projectId}/thread).
func (c *Client) ListThreads(ctx context.Context, projectID string, q ThreadQuery) (*Page[Thread], error) {
	p, err := seg("project id", projectID)
	if err != nil {
		return nil, fmt.Errorf("workspace: list threads: %w", err)
	}
	var page Page[Thread]
	if err := c.do(ctx, call{method: "GET", path: "/app/project/" + p + "/thread", query: q.values(), out: &page, kind: kindPage}); err != nil {
		return nil, err
	}
	return &page, nil
}

// GetThread returns a thread (GET /app/thread/{threadId}).
func (c *Client) GetThread(ctx context.Context, threadID string) (*Thread, error) {
	t, err := seg("thread id", threadID)
	if err != nil {
		return nil, fmt.Errorf("workspace: get thread: %w", err)
	}
	path, err := c.routePath(ctx, "/thread/"+t, "")
	if err != nil {
		return nil, fmt.Errorf("workspace: get thread: %w", err)
	}
	var th Thread
	if err := c.do(ctx, call{method: "GET", path: path, out: &th}); err != nil {
		return nil, err
	}
	return &th, nil
}

// UpdateThread renames a thread or changes its visibility
// (PUT /app/thread/{threadId}); nil fields are left unchanged. The response
// is undocumented: when the server answers without a body, UpdateThread
// fetches the thread.
func (c *Client) UpdateThread(ctx context.Context, threadID string, req UpdateThreadRequest) (*Thread, error) {
	t, err := seg("thread id", threadID)
	if err != nil {
		return nil, fmt.Errorf("workspace: update thread: %w", err)
	}
	path, err := c.routePath(ctx, "/thread/"+t, "")
	if err != nil {
		return nil, fmt.Errorf("workspace: update thread: %w", err)
	}
	var th Thread
	if err := c.do(ctx, call{method: "PUT", path: path, body: req, out: &th, emptyOK: true}); err != nil {
		return nil, err
	}
	if th.ID == "" {
		return c.GetThread(ctx, threadID)
	}
	return &th, nil
}

// DeleteThread deletes a thread (DELETE /app/thread/{threadId}). Whatever
// the server answers with a 2xx is ignored.
func (c *Client) DeleteThread(ctx context.Context, threadID string) error {
	t, err := seg("thread id", threadID)
	if err != nil {
		return fmt.Errorf("workspace: delete thread: %w", err)
	}
	path, err := c.routePath(ctx, "/thread/"+t, "")
	if err != nil {
		return fmt.Errorf("workspace: delete thread: %w", err)
	}
	return c.do(ctx, call{method: "DELETE", path: path})
}
