package workspace

import "context"

// Chat sends a one-shot request (POST /app/chat). The ChatRequest is the bare
// body, with no pgpt wrapper, and no thread is created. The one-shot body
// has no artifact ids: use a thread interaction to work over artifacts.
func (c *Client) Chat(ctx context.Context, req ChatRequest) (*ChatResponse, error) {
	var r ChatResponse
	if err := c.do(ctx, call{method: "POST", path: "/app/chat", body: req, out: &r, kind: kindInteraction}); err != nil {
		return nil, err
	}
	return &r, nil
}

// ValidateChat checks a request without running it (POST /app/chat/validate,
// bare body). Any 2xx means valid; an invalid request gives an *APIError
// with status 400 and the server's message (IsPermanent reports true).
func (c *Client) ValidateChat(ctx context.Context, req ChatRequest) error {
	return c.do(ctx, call{method: "POST", path: "/app/chat/validate", body: req})
}
