package workspace_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/threadmill/threadmill/workspace"
	"github.com/threadmill/threadmill/workspace/simulator"
)

// listCall is one listing request seen by pagedSim: its paging parameters
// and the status answered.
type listCall struct {
	page, pageSize, after string
	status                int
}

// statusRecorder keeps the status a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

// pagedSim serves a simulator holding n root artifacts with the compat
// switches c, over real HTTP, and records every artifact listing request.
func pagedSim(t *testing.T, c simulator.Compat, n int) (*workspace.Client, func() []listCall) {
	t.Helper()
	sim := simulator.New(simulator.Config{ProjectID: testProj, Org: testOrg, Token: testToken, Compat: c})
	for i := range n {
		sim.AddArtifact(simulator.ArtifactSpec{Name: fmt.Sprintf("doc-%03d.md", i), Content: "text"})
	}
	var mu sync.Mutex
	var calls []listCall
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		sim.ServeHTTP(rec, r)
		if strings.HasSuffix(r.URL.Path, "/artifact") {
			q := r.URL.Query()
			mu.Lock()
			calls = append(calls, listCall{q.Get("page"), q.Get("page_size"), q.Get("after"), rec.status})
			mu.Unlock()
		}
	}))
	t.Cleanup(func() {
		srv.Close()
		sim.Close()
	})
	return newClient(t, srv), func() []listCall {
		mu.Lock()
		defer mu.Unlock()
		return append([]listCall(nil), calls...)
	}
}

// listAll lists every root artifact with Artifacts and returns their names
// in order and the error that ended the listing.
func listAll(t *testing.T, c *workspace.Client, q workspace.ArtifactQuery) ([]string, error) {
	t.Helper()
	var names []string
	for a, err := range c.Artifacts(ctxT(t), testProj, q) {
		if err != nil {
			return names, err
		}
		names = append(names, a.Name)
	}
	return names, nil
}

// wantAllNames checks that names are doc-000.md … doc-(n-1).md, each once,
// in order.
func wantAllNames(t *testing.T, names []string, n int) {
	t.Helper()
	if len(names) != n {
		t.Fatalf("listed %d artifacts, want %d", len(names), n)
	}
	for i, name := range names {
		if want := fmt.Sprintf("doc-%03d.md", i); name != want {
			t.Fatalf("artifact %d is %s, want %s", i, name, want)
		}
	}
}

// Against max-page-size=N the pager halves its page size on the 422 naming
// page_size, keeps the smaller size for the rest of the listing, and lists
// everything; below the documented default of 20 it gives up with the
// server's 422.
func TestCompatMaxPageSizeListing(t *testing.T) {
	t.Run("max 50", func(t *testing.T) {
		c, calls := pagedSim(t, simulator.Compat{MaxPageSize: 50}, 250)
		names, err := listAll(t, c, workspace.ArtifactQuery{})
		if err != nil {
			t.Fatal(err)
		}
		wantAllNames(t, names, 250)
		got := calls()
		want := []listCall{{"1", "100", "", 422}}
		for p := 1; p <= 5; p++ {
			want = append(want, listCall{fmt.Sprint(p), "50", "", 200})
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("requests %v, want %v", got, want)
		}
	})
	t.Run("max 30 from page 1 of 100", func(t *testing.T) {
		c, calls := pagedSim(t, simulator.Compat{MaxPageSize: 30}, 250)
		names, err := listAll(t, c, workspace.ArtifactQuery{})
		if err != nil {
			t.Fatal(err)
		}
		wantAllNames(t, names, 250)
		got := calls()
		if len(got) != 12 || got[0].status != 422 || got[1].pageSize != "50" || got[1].status != 422 ||
			got[2].pageSize != "25" || got[2].page != "1" || got[11].page != "10" || got[11].pageSize != "25" {
			t.Errorf("requests %v", got)
		}
	})
	t.Run("cursor mode keeps the cursor", func(t *testing.T) {
		c, calls := pagedSim(t, simulator.Compat{MaxPageSize: 50}, 250)
		first, err := c.ListArtifacts(ctxT(t), testProj, workspace.ArtifactQuery{PageParams: workspace.PageParams{PageSize: 50}})
		if err != nil {
			t.Fatal(err)
		}
		names, err := listAll(t, c, workspace.ArtifactQuery{PageParams: workspace.PageParams{After: first.NextCursor, PageSize: 200}})
		if err != nil {
			t.Fatal(err)
		}
		if len(names) != 200 || names[0] != "doc-050.md" {
			t.Errorf("listed %d from %v", len(names), names[:1])
		}
		if got := calls(); got[1].pageSize != "200" || got[1].status != 422 || got[2].after != first.NextCursor || got[2].pageSize != "100" {
			t.Errorf("requests %v", got)
		}
	})
	t.Run("max below the default", func(t *testing.T) {
		c, calls := pagedSim(t, simulator.Compat{MaxPageSize: 10}, 30)
		names, err := listAll(t, c, workspace.ArtifactQuery{})
		ae, ok := errors.AsType[*workspace.APIError](err)
		if len(names) != 0 || !ok || ae.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(err.Error(), "less than or equal to 10") {
			t.Fatalf("names %v, err %v", names, err)
		}
		var sizes []string
		for _, c := range calls() {
			sizes = append(sizes, c.pageSize)
		}
		if strings.Join(sizes, ",") != "100,50,25,20" {
			t.Errorf("page sizes %v, want 100,50,25,20", sizes)
		}
	})
}

// Against pagination=cursor (page ignored) the pager notices that page 2
// repeats page 1 and follows next_cursor from the end of page 1.
func TestCompatCursorPaginationListing(t *testing.T) {
	c, calls := pagedSim(t, simulator.Compat{Pagination: simulator.PaginationCursor}, 250)
	names, err := listAll(t, c, workspace.ArtifactQuery{})
	if err != nil {
		t.Fatal(err)
	}
	wantAllNames(t, names, 250)
	got := calls()
	want := []listCall{{"1", "100", "", 200}, {"2", "100", "", 200}, {"", "100", "c100", 200}, {"", "100", "c200", 200}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("requests %v, want %v", got, want)
	}

	// Both at once: a cursor-only server with a maximum page size.
	c, _ = pagedSim(t, simulator.Compat{Pagination: simulator.PaginationCursor, MaxPageSize: 50}, 250)
	names, err = listAll(t, c, workspace.ArtifactQuery{})
	if err != nil {
		t.Fatal(err)
	}
	wantAllNames(t, names, 250)
}

// Whatever shape a 400 from validate takes (simulator --compat
// validate-400), ValidateChat returns a permanent *APIError naming the
// endpoint and carrying the server's message.
func TestValidate400Shapes(t *testing.T) {
	req := workspace.ChatRequest{Messages: []workspace.Message{}}
	for _, shape := range []string{simulator.Validate400Valid, simulator.Validate400DetailList, simulator.Validate400DetailString,
		simulator.Validate400Message, simulator.Validate400Error, simulator.Validate400Text} {
		t.Run(shape, func(t *testing.T) {
			sim := simulator.New(simulator.Config{ProjectID: testProj, Org: testOrg, Token: testToken,
				Compat: simulator.Compat{Validate400: shape}})
			srv := httptest.NewServer(sim)
			t.Cleanup(func() {
				srv.Close()
				sim.Close()
			})
			err := newClient(t, srv).ValidateChat(ctxT(t), req)
			ae, ok := errors.AsType[*workspace.APIError](err)
			if !ok || ae.StatusCode != http.StatusBadRequest || !workspace.IsPermanent(err) {
				t.Fatalf("ValidateChat = %v (%T), want a permanent 400 *APIError", err, err)
			}
			t.Log(err)
			const want = "workspace: POST /api/v1/app/chat/validate: 400 Bad Request: "
			if !strings.HasPrefix(err.Error(), want) || !strings.Contains(ae.Message, "messages must not be empty") {
				t.Errorf("error %q, message %q: want %q and the server's message", err, ae.Message, want)
			}
			if c := sim.Counters(); c.Validations != 1 || c.ValidationsFailed != 1 {
				t.Errorf("%d validations, %d failed; want one", c.Validations, c.ValidationsFailed)
			}
		})
	}
}
