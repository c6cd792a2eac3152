package hostile_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/threadmill/threadmill/internal/hostile"
)

// backend counts the requests that reach it and answers 201 with a small
// JSON body, or a one-page listing for GETs.
type backend struct{ n atomic.Int64 }

func (b *backend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.n.Add(1)
	w.Header().Set("Content-Type", "application/json")
	if r.Method == http.MethodGet {
		io.WriteString(w, `{"data":[{"id":"a1"}],"has_next_page":false,"has_previous_page":false}`)
		return
	}
	w.WriteHeader(http.StatusCreated)
	io.WriteString(w, `{"id":"inter_1","state":"Processing","padding":"0123456789012345678901234567890123456789"}`)
}

func serve(t *testing.T, f *hostile.Front) string {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	t.Cleanup(f.Close)
	return srv.URL
}

func post(t *testing.T, url string) (*http.Response, error) {
	t.Helper()
	resp, err := http.Post(url+"/api/v1/app/thread/t1/interaction", "application/json", strings.NewReader("{}"))
	if err == nil {
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	return resp, err
}

func TestLoseAnswerReachesTheServerSkipAndTimesCount(t *testing.T) {
	b := &backend{}
	f := hostile.New(b)
	r := f.Add(&hostile.Rule{Method: http.MethodPost, Path: hostile.CreateInteraction, Skip: 1, Times: 2, Do: hostile.LoseAnswer(http.StatusGatewayTimeout)})
	url := serve(t, f)
	var codes []int
	for range 4 {
		resp, err := post(t, url)
		if err != nil {
			t.Fatal(err)
		}
		codes = append(codes, resp.StatusCode)
	}
	if want := []int{201, 504, 504, 201}; !slices.Equal(codes, want) {
		t.Errorf("statuses %v, want %v", codes, want)
	}
	if b.n.Load() != 4 || r.Hits() != 2 {
		t.Errorf("backend saw %d requests, rule acted %d times; want 4 and 2", b.n.Load(), r.Hits())
	}
}

func TestPathPatterns(t *testing.T) {
	b := &backend{}
	f := hostile.New(b)
	r := f.Add(&hostile.Rule{Path: "/api/v1/app/interaction/*", Do: hostile.Respond(http.StatusNotFound, `{}`)})
	url := serve(t, f)
	for path, want := range map[string]int{
		"/api/v1/app/interaction/x":        404,
		"/api/v1/app/interaction/x/stream": 200,
		"/api/v1/app/interaction":          200,
	} {
		resp, err := http.Get(url + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s: %d, want %d", path, resp.StatusCode, want)
		}
	}
	if r.Hits() != 1 {
		t.Errorf("rule acted %d times, want 1", r.Hits())
	}
}

func TestResetMidBodyCutsTheAnswerAfterTheServerActed(t *testing.T) {
	b := &backend{}
	f := hostile.New(b)
	f.Add(&hostile.Rule{Do: hostile.ResetMidBody()})
	url := serve(t, f)
	_, err := post(t, url)
	if err == nil {
		t.Fatal("a reset answer read without error")
	}
	if b.n.Load() != 1 {
		t.Errorf("backend saw %d requests, want 1", b.n.Load())
	}
}

func TestSamePageForeverClaimsANextPage(t *testing.T) {
	f := hostile.New(&backend{})
	f.Add(&hostile.Rule{Path: hostile.ListArtifacts, Do: hostile.SamePageForever()})
	url := serve(t, f)
	resp, err := http.Get(url + "/api/v1/app/project/p/artifact?page=7")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var page struct {
		Data        []map[string]any `json:"data"`
		HasNextPage bool             `json:"has_next_page"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&page); err != nil {
		t.Fatal(err)
	}
	if !page.HasNextPage || len(page.Data) != 1 {
		t.Errorf("page %+v, want the first page claiming a next one", page)
	}
}

func TestStallHoldsUntilTheClientGivesUp(t *testing.T) {
	f := hostile.New(&backend{})
	f.Add(&hostile.Rule{Do: hostile.Stall()})
	url := serve(t, f)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err == nil {
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err %v, want the client's deadline", err)
	}
}

func TestRetryAfterAsHTTPDate(t *testing.T) {
	f := hostile.New(&backend{})
	at := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
	f.Add(&hostile.Rule{Do: hostile.RetryAfter(hostile.HTTPDate(at))})
	resp, err := http.Get(serve(t, f))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "Thu, 03 Dec 2026 09:00:00 GMT" {
		t.Errorf("%d Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}
