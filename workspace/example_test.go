package workspace_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http/httptest"
	"strings"

	"github.com/threadmill/threadmill/workspace"
	"github.com/threadmill/threadmill/workspace/simulator"
)

// Example drives the Workspace API end to end against the simulator: a
// preflight, the artifacts of a folder, a validated request sent as a thread
// interaction and followed until it finishes.
func Example() {
	sim := simulator.New(simulator.Config{ProjectID: "proj_demo", Token: "demo-token", Async: true})
	defer sim.Close()
	folder := sim.AddArtifact(simulator.ArtifactSpec{Name: "Policies", Type: workspace.ArtifactTypeFolder})
	sim.AddArtifact(simulator.ArtifactSpec{Name: "refund-policy.md", ParentID: folder.ID,
		Content: "Refunds are processed within 14 days of the request. Annual plans are refunded pro rata after the first month."})
	srv := httptest.NewServer(sim)
	defer srv.Close()

	ctx := context.Background()
	c, err := workspace.New(srv.URL, workspace.WithToken("demo-token"), workspace.WithOrg("default"))
	if err != nil {
		log.Fatal(err)
	}
	defer c.CloseIdleConnections()
	if _, err := c.Me(ctx); err != nil { // preflight: token and org
		log.Fatal(err)
	}

	var ids []string
	for a, err := range c.Artifacts(ctx, "proj_demo", workspace.ArtifactQuery{ParentID: folder.ID}) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println("artifact:", a.Name)
		ids = append(ids, a.ID)
	}

	maxTokens := 60
	req := workspace.ChatRequest{
		Messages:  []workspace.Message{workspace.UserText("How fast are refunds processed? One bullet.")},
		MaxTokens: &maxTokens,
	}
	if err := c.ValidateChat(ctx, req); err != nil {
		log.Fatal(err)
	}
	th, err := c.CreateThread(ctx, "proj_demo", workspace.CreateThreadRequest{Name: "refunds"})
	if err != nil {
		log.Fatal(err)
	}
	in, err := c.CreateInteraction(ctx, th.ID, workspace.CreateInteractionRequest{PGPT: req, ArtifactIDs: ids})
	if err != nil {
		log.Fatal(err)
	}
	in, err = c.WaitInteraction(ctx, in.ID)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("state:", in.State)
	fmt.Println("answer:", in.Output())

	// A finished interaction cannot be cancelled.
	err = c.CancelInteraction(ctx, in.ID)
	fmt.Println("cancel after the end:", errors.Is(err, workspace.ErrAlreadyFinished))

	// An invalid request is refused with the server's message.
	zero := 0
	req.MaxTokens = &zero
	err = c.ValidateChat(ctx, req)
	fmt.Println("permanent:", workspace.IsPermanent(err))
	// Output:
	// artifact: refund-policy.md
	// state: Completed
	// answer: - Refunds are processed within 14 days of the request.
	// cancel after the end: true
	// permanent: true
}

// ExampleReadStream assembles an interaction stream read from any
// io.Reader: CRLF line endings, comments, pings and unknown events are fine.
func ExampleReadStream() {
	stream := "event: message_start\r\n" +
		"data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"content\":[]}}\r\n\r\n" +
		": keep-alive\r\n\r\n" +
		"event: content_block_delta\r\n" +
		"data: {\"type\":\"content_block_delta\",\"block_id\":\"b1\",\"delta\":{\"type\":\"text_delta\",\"text\":\"Risk 1: \"}}\r\n\r\n" +
		"event: ping\r\ndata: {\"type\":\"ping\"}\r\n\r\n" +
		"event: content_block_delta\r\n" +
		"data: {\"type\":\"content_block_delta\",\"block_id\":\"b1\",\"delta\":{\"type\":\"text_delta\",\"text\":\"late refunds.\"}}\r\n\r\n" +
		"event: message_delta\r\n" +
		"data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"stop\",\"usage\":{\"input_tokens\":210,\"output_tokens\":64}}}\r\n\r\n" +
		"event: message_stop\r\ndata: {\"type\":\"message_stop\"}\r\n\r\n"
	res, err := workspace.ReadStream(strings.NewReader(stream), workspace.Limits{}, nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%q %s %d+%d\n", res.Text(), res.StopReason, res.Usage.InputTokens, res.Usage.OutputTokens)

	_, err = workspace.ReadStream(strings.NewReader(stream[:200]), workspace.Limits{}, nil)
	fmt.Println(errors.Is(err, workspace.ErrStreamIncomplete), workspace.IsRetryable(err))
	// Output:
	// "Risk 1: late refunds." stop 210+64
	// true true
}
