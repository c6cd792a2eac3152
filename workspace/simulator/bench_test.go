package simulator_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

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
