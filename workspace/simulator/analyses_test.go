package simulator

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/threadmill/threadmill/workspace"
)

// TestAnalysesStayWithinBudget checks the analysis cache: every analysis
// it returns is the artifact's, cached or evicted; what it keeps stays
// within its budget; a recently used analysis stays, and a forgotten one
// is made again.
func TestAnalysesStayWithinBudget(t *testing.T) {
	const budget = 16 << 10
	c := analyses{budget: budget}
	var arts []*artifact
	for i := range 100 {
		var sb strings.Builder
		for j := range 5 {
			fmt.Fprintf(&sb, "Document %d says in sentence %d that the release shipped on time. ", i, j)
		}
		arts = append(arts, &artifact{dto: workspace.Artifact{ID: fmt.Sprint(i), Content: sb.String()}})
	}
	largest := 0
	for range 3 {
		for _, a := range arts {
			got := c.of(a)
			if want := analyze(a.dto.Content); !reflect.DeepEqual(got, want) {
				t.Fatalf("artifact %s: analysis %v, want %v", a.dto.ID, got, want)
			}
			largest = max(largest, analysisSize(got))
			kept := 0
			for _, gen := range []map[*artifact][]sentence{c.young, c.old} {
				for _, s := range gen {
					kept += analysisSize(s)
				}
			}
			if kept > budget+largest {
				t.Fatalf("the cache keeps %d bytes, over its budget of %d", kept, budget)
			}
		}
	}
	if len(c.young)+len(c.old) >= len(arts) {
		t.Fatalf("the cache keeps %d analyses of %d artifacts", len(c.young)+len(c.old), len(arts))
	}
	a := arts[len(arts)-1]
	if first, again := c.of(a), c.of(a); &first[0] != &again[0] {
		t.Error("a recently used analysis was made again")
	}
	first := c.of(a)
	c.forget(a)
	if again := c.of(a); &first[0] == &again[0] || !reflect.DeepEqual(first, again) {
		t.Error("a forgotten analysis was not made again, or differs")
	}
}

// The store itself forgets old chats, not only Chats' view of it: what it
// holds stays under twice ChatsKept however many chats are answered.
func TestChatStoreStaysBounded(t *testing.T) {
	s := New(Config{})
	defer s.Close()
	srv := httptest.NewServer(s)
	defer srv.Close()
	body := `{"messages":[{"role":"user","content":[{"type":"text","text":"Give the status."}]}]}`
	for i := range 2*ChatsKept + 5 {
		req, _ := http.NewRequest("POST", srv.URL+"/api/v1/app/chat", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("x-org", "default")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("chat %d: status %d %s", i, resp.StatusCode, b)
		}
	}
	s.mu.Lock()
	held := len(s.store.chats)
	s.mu.Unlock()
	if held >= 2*ChatsKept || held < ChatsKept {
		t.Errorf("the store holds %d chats, want from %d to under %d", held, ChatsKept, 2*ChatsKept)
	}
}
