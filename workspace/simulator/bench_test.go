package simulator_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/threadmill/threadmill/examples"
	"github.com/threadmill/threadmill/workspace"
	"github.com/threadmill/threadmill/workspace/simulator"
)

// benchServer serves a corpus-seeded simulator with a client that keeps
// enough idle connections for parallel benchmarks.
func benchServer(b *testing.B, cfg simulator.Config) (*simulator.Server, *httptest.Server, *http.Client) {
	b.Helper()
	sim := simulator.New(cfg)
	if err := sim.AddDir(examples.Artifacts, "."); err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(sim)
	b.Cleanup(func() { sim.Close(); srv.Close() })
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	b.Cleanup(client.CloseIdleConnections)
	return sim, srv, client
}

func benchPost(b *testing.B, client *http.Client, url string, body []byte, want int) {
	req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
	req.Header.Set("x-org", "default")
	resp, err := client.Do(req)
	if err != nil {
		b.Error(err)
		return
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != want {
		b.Errorf("status %d, want %d", resp.StatusCode, want)
	}
}

// BenchmarkValidate measures POST /app/chat/validate over real HTTP.
func BenchmarkValidate(b *testing.B) {
	_, srv, client := benchServer(b, simulator.Config{})
	body, _ := json.Marshal(chat("Summarize the ticket in three bullets."))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			benchPost(b, client, srv.URL+"/api/v1/app/chat/validate", body, 204)
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}

// BenchmarkInteraction measures a synchronous interaction over one ticket
// (validation, responder, billing) with zero latency.
func BenchmarkInteraction(b *testing.B) {
	sim, srv, client := benchServer(b, simulator.Config{})
	ticket, _ := sim.ArtifactByPath("Support/Tickets/TCK-1044-duplicate-charges-stripe.md")
	var th workspace.Thread
	{
		body, _ := json.Marshal(workspace.CreateThreadRequest{Name: "bench", Visibility: "Private"})
		req, _ := http.NewRequest("POST", srv.URL+"/api/v1/app/project/"+project+"/thread", bytes.NewReader(body))
		req.Header.Set("x-org", "default")
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_ = json.NewDecoder(resp.Body).Decode(&th)
		resp.Body.Close()
	}
	body, _ := json.Marshal(workspace.CreateInteractionRequest{
		ThreadID: th.ID, PGPT: chat("Summarize the ticket in three bullets."), ArtifactIDs: []string{ticket.ID},
	})
	url := fmt.Sprintf("%s/api/v1/app/thread/%s/interaction", srv.URL, th.ID)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			benchPost(b, client, url, body, 201)
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}

// BenchmarkListArtifacts measures listing every document of a large corpus
// through the client's pager, 100 per page (THREADMILL_BENCH_ARTIFACTS sets
// the corpus size, default 20,000): the listing's cost per page should not
// grow with the corpus. It reports artifacts per second.
func BenchmarkListArtifacts(b *testing.B) {
	n := 20000
	if v := os.Getenv("THREADMILL_BENCH_ARTIFACTS"); v != "" {
		if _, err := fmt.Sscan(v, &n); err != nil {
			b.Fatalf("THREADMILL_BENCH_ARTIFACTS=%q: %v", v, err)
		}
	}
	sim := simulator.New(simulator.Config{})
	folder := sim.AddArtifact(simulator.ArtifactSpec{Name: "Bulk", Type: workspace.ArtifactTypeFolder})
	for i := range n {
		sim.AddArtifact(simulator.ArtifactSpec{Name: fmt.Sprintf("doc-%06d.md", i), ParentID: folder.ID, Content: "A short document."})
	}
	srv := httptest.NewServer(sim)
	b.Cleanup(func() { sim.Close(); srv.Close() })
	c, err := workspace.New(srv.URL, workspace.WithOrg("default"))
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		got := 0
		for _, err := range c.Artifacts(context.Background(), simulator.DefaultProjectID,
			workspace.ArtifactQuery{ParentID: folder.ID, IncludeDescendants: true, PageParams: workspace.PageParams{PageSize: 100}}) {
			if err != nil {
				b.Fatal(err)
			}
			got++
		}
		if got != n {
			b.Fatalf("listed %d artifacts, want %d", got, n)
		}
	}
	b.ReportMetric(float64(n*b.N)/time.Since(start).Seconds(), "artifacts/s")
}
