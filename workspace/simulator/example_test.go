package simulator_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/threadmill/threadmill/examples"
	"github.com/threadmill/threadmill/workspace"
	"github.com/threadmill/threadmill/workspace/simulator"
)

// A simulator seeded with the example corpus, served over real HTTP, answers
// a one-shot chat deterministically and counts what it billed.
func Example() {
	sim := simulator.New(simulator.Config{ProjectID: "proj_demo", Token: "secret"})
	defer sim.Close()
	if err := sim.AddDir(examples.Artifacts, "."); err != nil {
		panic(err)
	}
	srv := httptest.NewServer(sim)
	defer srv.Close()

	body := `{"messages":[{"role":"user","content":[{"type":"text","text":"Reply in one bullet. Refunds take 5 to 10 business days to appear."}]}],"max_tokens":64}`
	req, _ := http.NewRequest("POST", srv.URL+"/api/v1/app/chat", strings.NewReader(body))
	req.Header.Set("x-org", "default")
	req.Header.Set("Authorization", "Bearer secret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var answer workspace.ChatResponse
	if err := json.Unmarshal(data, &answer); err != nil {
		panic(err)
	}
	fmt.Println(resp.StatusCode, answer.StopReason)
	fmt.Println(answer.Text())
	c := sim.Counters()
	fmt.Println(c.ChatsAnswered, c.TokensIn, c.TokensOut)
	// Output:
	// 200 end_turn
	// - Refunds take 5 to 10 business days to appear.
	// 1 17 12
}

// AddArtifact seeds artifacts one by one, e.g. a folder of many documents
// for a bulk test.
func ExampleServer_AddArtifact() {
	sim := simulator.New(simulator.Config{})
	defer sim.Close()
	folder := sim.AddArtifact(simulator.ArtifactSpec{Name: "Bulk", Type: workspace.ArtifactTypeFolder})
	for i := range 3 {
		sim.AddArtifact(simulator.ArtifactSpec{
			Name:     fmt.Sprintf("doc-%d.md", i),
			ParentID: folder.ID,
			Content:  fmt.Sprintf("Document %d reports steady progress this week.", i),
		})
	}
	for _, a := range sim.Artifacts() {
		fmt.Println(a.Name, a.Type, a.State, a.IngestStatus)
	}
	// Output:
	// Bulk Folder Published NotApplicable
	// doc-0.md Document Published Done
	// doc-1.md Document Published Done
	// doc-2.md Document Published Done
}
