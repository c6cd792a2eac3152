package simulator_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/threadmill/threadmill/workspace"
	"github.com/threadmill/threadmill/workspace/simulator"
)

func TestHealthAndAdminNeedNoAuth(t *testing.T) {
	e := newEnv(t, simulator.Config{Token: "s3cret"})
	e.org, e.token = "", ""
	var health map[string]string
	e.must("GET", "/api/health", nil, http.StatusOK, &health)
	if health["status"] != "ok" {
		t.Fatalf("health = %v", health)
	}
	var c simulator.Counters
	e.must("GET", "/_sim/counters", nil, http.StatusOK, &c)
	if c.Requests["GET /api/health"][200] != 1 {
		t.Fatalf("counters at the admin endpoint = %+v, want one health request", c.Requests)
	}
}

func TestAuth(t *testing.T) {
	e := newEnv(t, simulator.Config{Token: "s3cret", Org: "acme"})
	cases := []struct {
		name, org, auth string
		want            int
		msg             string
	}{
		{"ok", "acme", "Bearer s3cret", 200, ""},
		{"org uuid", simulator.DefaultOrgID, "Bearer s3cret", 200, ""},
		{"missing org", "", "Bearer s3cret", 400, "missing x-org header"},
		{"wrong org", "other", "Bearer s3cret", 403, `organisation "other"`},
		{"missing token", "acme", "", 401, "missing Authorization header"},
		{"wrong token", "acme", "Bearer nope", 401, "invalid API token"},
		{"not bearer", "acme", "Basic czNjcmV0", 401, "invalid API token"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := e.request("GET", "/api/v1/app/me", nil)
			req.Header.Del("x-org")
			req.Header.Del("Authorization")
			if tc.org != "" {
				req.Header.Set("x-org", tc.org)
			}
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			status, hdr, body := e.send(req)
			if status != tc.want {
				t.Fatalf("status %d, want %d; body %s", status, tc.want, body)
			}
			if tc.want != 200 {
				var eb struct{ Message string }
				if err := json.Unmarshal(body, &eb); err != nil || !strings.Contains(eb.Message, tc.msg) {
					t.Fatalf("error body %s (%v), want JSON message containing %q", body, err, tc.msg)
				}
				if !strings.HasPrefix(hdr.Get("Content-Type"), "application/json") {
					t.Fatalf("content type %q", hdr.Get("Content-Type"))
				}
				if strings.Contains(string(body), "s3cret") {
					t.Fatal("error body leaks the token")
				}
				return
			}
			var u workspace.User
			if err := json.Unmarshal(body, &u); err != nil || u.OrgID != simulator.DefaultOrgID || u.ID == "" {
				t.Fatalf("me = %s (%v)", body, err)
			}
		})
	}
}

func TestUnknownRoutes(t *testing.T) {
	e := newEnv(t, simulator.Config{})
	status, body := e.do("GET", "/api/v1/app/nope", nil)
	if status != 404 || !strings.Contains(string(body), `"message":"no route for GET /api/v1/app/nope"`) {
		t.Fatalf("unknown route: %d %s", status, body)
	}
	status, hdr, body := e.send(e.request("PATCH", "/api/v1/app/chat", "{}"))
	if status != 405 || !strings.Contains(hdr.Get("Allow"), "POST") || !json.Valid(body) {
		t.Fatalf("wrong method: %d allow=%q %s", status, hdr.Get("Allow"), body)
	}
	if n := e.sim.Counters().Requests["unmatched"]; n[404] != 1 || n[405] != 1 {
		t.Fatalf("unmatched counters = %v", n)
	}
}

func TestThreads(t *testing.T) {
	e := newEnv(t, simulator.Config{})
	base := "/api/v1/app/project/" + project + "/thread"

	for _, tc := range []struct {
		body, msg string
	}{
		{`{"visibility":"Private"}`, "name is required"},
		{`{"name":"x"}`, "visibility is required"},
		{`{"name":"x","visibility":"Secret"}`, `visibility "Secret" is not one of Public, Private`},
		{`{"name":"  ","visibility":"Public"}`, "name must not be empty"},
		{`{"name":7,"visibility":"Public"}`, "name must be a string, not a number"},
		{`[1]`, "must be a JSON object"},
		{``, "request body is empty"},
		{`{"name":`, "not valid JSON"},
	} {
		status, body := e.do("POST", base, tc.body)
		if status != 400 || !strings.Contains(errText(body), tc.msg) {
			t.Errorf("create %s: %d %s, want 400 with %q", tc.body, status, body, tc.msg)
		}
	}
	if status, _ := e.do("POST", "/api/v1/app/project/proj_other/thread", `{"name":"x","visibility":"Public"}`); status != 404 {
		t.Fatalf("unknown project: %d", status)
	}

	var ids []string
	for i := range 5 {
		th := e.createThread(fmt.Sprintf("batch-%d", i))
		if th.ID == "" || th.Name != fmt.Sprintf("batch-%d", i) || th.Visibility != "Private" || th.ProjectID != project ||
			th.CreatedAt != "2026-06-15T09:00:00Z" {
			t.Fatalf("created thread = %+v", th)
		}
		ids = append(ids, th.ID)
	}

	var page workspace.Page[workspace.Thread]
	e.must("GET", base+"?page=2&page_size=2&total_count=true", nil, 200, &page)
	if len(page.Data) != 2 || page.Data[0].ID != ids[2] || !page.HasNextPage || !page.HasPreviousPage ||
		page.TotalCount == nil || *page.TotalCount != 5 || page.NextCursor == "" {
		t.Fatalf("page 2 = %+v", page)
	}
	cursor := page.NextCursor
	page = workspace.Page[workspace.Thread]{}
	e.must("GET", base+"?page_size=2&after="+cursor, nil, 200, &page)
	if len(page.Data) != 1 || page.Data[0].ID != ids[4] || page.HasNextPage || page.TotalCount != nil {
		t.Fatalf("page after cursor = %+v", page)
	}

	var th workspace.Thread
	e.must("PUT", "/api/v1/app/thread/"+ids[0], `{"name":"renamed"}`, 200, &th)
	if th.Name != "renamed" || th.Visibility != "Private" {
		t.Fatalf("updated = %+v", th)
	}
	if status, body := e.do("PUT", "/api/v1/app/thread/"+ids[0], `{"visibility":"Hidden"}`); status != 400 {
		t.Fatalf("bad update: %d %s", status, body)
	}
	e.must("GET", "/api/v1/app/thread/"+ids[0], nil, 200, &th)
	if th.Name != "renamed" {
		t.Fatalf("get after update = %+v", th)
	}
	e.must("DELETE", "/api/v1/app/thread/"+ids[0], nil, 200, &th)
	if th.State != "Deleted" {
		t.Fatalf("deleted = %+v", th)
	}
	for _, m := range []string{"GET", "DELETE"} {
		if status, _ := e.do(m, "/api/v1/app/thread/"+ids[0], nil); status != 404 {
			t.Fatalf("%s deleted thread: %d", m, status)
		}
	}
	if status, _ := e.do("PUT", "/api/v1/app/thread/"+ids[0], `{"name":"x"}`); status != 404 {
		t.Fatalf("PUT deleted thread: %d", status)
	}
	e.must("GET", base, nil, 200, &page)
	if len(page.Data) != 4 {
		t.Fatalf("active threads = %d, want 4", len(page.Data))
	}
	e.must("GET", base+"?state=Deleted", nil, 200, &page)
	if len(page.Data) != 1 || page.Data[0].ID != ids[0] {
		t.Fatalf("deleted threads = %+v", page.Data)
	}
	if status, _ := e.do("GET", base+"?page=0", nil); status != 400 {
		t.Fatal("page=0 accepted")
	}
	if status, _ := e.do("GET", base+"?after=bogus", nil); status != 400 {
		t.Fatal("bogus cursor accepted")
	}
}

func TestArtifactList(t *testing.T) {
	e := newEnv(t, simulator.Config{})
	list := func(query string) workspace.Page[workspace.Artifact] {
		t.Helper()
		var p workspace.Page[workspace.Artifact]
		e.must("GET", "/api/v1/app/project/"+project+"/artifact?"+query, nil, 200, &p)
		return p
	}
	names := func(p workspace.Page[workspace.Artifact]) []string {
		var out []string
		for _, a := range p.Data {
			out = append(out, a.Name)
		}
		return out
	}

	root := list("")
	if got := names(root); !slices.Equal(got, []string{"Meetings", "Onboarding", "Policies", "Product", "Support"}) {
		t.Fatalf("root = %v", got)
	}
	for _, a := range root.Data {
		if a.Type != "Folder" || a.ParentID != nil || a.IngestStatus != "NotApplicable" || a.ChildCount == 0 {
			t.Fatalf("root folder = %+v", a)
		}
	}

	support := e.artifactID("Support")
	tickets := e.artifactID("Support/Tickets")
	if got := names(list("parent_id=" + support)); !slices.Equal(got, []string{"Tickets"}) {
		t.Fatalf("children of Support = %v", got)
	}
	all := list("parent_id=" + tickets + "&page_size=100&total_count=true")
	if len(all.Data) != 15 || *all.TotalCount != 15 || all.HasNextPage {
		t.Fatalf("tickets: %d items, total %v", len(all.Data), all.TotalCount)
	}
	for _, a := range all.Data {
		if a.Type != "Document" || a.State != "Published" || a.IngestStatus != "Done" || *a.ParentID != tickets ||
			a.Content != "" || !a.HasContent || a.UpdatedAt != "2026-06-15T09:00:00Z" || !strings.HasPrefix(a.Name, "TCK-") {
			t.Fatalf("ticket = %+v", a)
		}
	}
	if got := list("parent_id=" + support + "&include_descendants=true&page_size=100"); len(got.Data) != 16 {
		t.Fatalf("descendants of Support = %d, want 16", len(got.Data))
	}
	whole := list("include_descendants=true&page_size=100&total_count=true")
	if *whole.TotalCount != 41 {
		t.Fatalf("whole project = %d artifacts, want 41 (34 documents, 7 folders)", *whole.TotalCount)
	}
	if got := list("include_descendants=true&type=Folder&page_size=100"); len(got.Data) != 7 {
		t.Fatalf("folders = %d", len(got.Data))
	}
	if got := names(list("include_descendants=true&filter_by_text=LOGIN")); !slices.Equal(got, []string{"TCK-1041-login-loop.md"}) {
		t.Fatalf("filter_by_text = %v", got)
	}
	if got := names(list("include_descendants=true&filter_by_text=login&keep_ancestors=true")); !slices.Equal(got,
		[]string{"Support", "Tickets", "TCK-1041-login-loop.md"}) {
		t.Fatalf("filter_by_text with keep_ancestors = %v", got)
	}
	if got := list("include_descendants=true&filter_by_parent=true&page_size=100&total_count=true"); *got.TotalCount != 36 {
		t.Fatalf("filter_by_parent = %d artifacts, want 36 (all but the 5 root folders)", *got.TotalCount)
	}
	if got := list("include_descendants=true&source=User&page_size=1&total_count=true"); *got.TotalCount != 41 {
		t.Fatalf("source=User = %d, want 41", *got.TotalCount)
	}
	if got := list("include_descendants=true&source=SharePoint,Confluence"); len(got.Data) != 0 {
		t.Fatalf("source=SharePoint = %v", names(got))
	}
	if got := list("include_descendants=true&sub_type=pdf"); len(got.Data) != 0 {
		t.Fatalf("sub_type=pdf = %v", names(got))
	}
	var me workspace.User
	e.must("GET", "/api/v1/app/me", nil, 200, &me)
	if got := list("include_descendants=true&created_by=" + me.ID + "&page_size=1&total_count=true"); *got.TotalCount != 41 {
		t.Fatalf("created_by=me = %d, want 41", *got.TotalCount)
	}
	if got := list("include_descendants=true&created_by=user_other"); len(got.Data) != 0 {
		t.Fatalf("created_by=user_other = %v", names(got))
	}
	if got := names(list("parent_id=" + tickets + "&order_by=Alphabetical&order=DESC&page_size=2")); !slices.Equal(got,
		[]string{"TCK-1055-sandbox-request-partner.md", "TCK-1054-quickbooks-sync-duplicates.md"}) {
		t.Fatalf("alphabetical desc = %v", got)
	}
	withContent := list("parent_id=" + tickets + "&page_size=1&include_content=true")
	if !strings.HasPrefix(withContent.Data[0].Content, "# TCK-1041") {
		t.Fatalf("include_content: %q", withContent.Data[0].Content)
	}

	// Pagination by page follows has_next_page to the end.
	var seen []string
	for page := 1; ; page++ {
		p := list(fmt.Sprintf("include_descendants=true&type=Document&page_size=7&page=%d", page))
		seen = append(seen, names(p)...)
		if !p.HasNextPage {
			break
		}
	}
	if len(seen) != 34 {
		t.Fatalf("paged through %d documents, want 34", len(seen))
	}

	// State filters: Error artifacts are hidden unless asked for.
	bad := e.sim.AddArtifact(simulator.ArtifactSpec{Name: "broken.pdf", ParentID: tickets, State: "Error", IngestStatus: "Error"})
	proc := e.sim.AddArtifact(simulator.ArtifactSpec{Name: "new.md", ParentID: tickets, State: "Processing", IngestStatus: "Parsing"})
	got := names(list("parent_id=" + tickets + "&page_size=100"))
	if slices.Contains(got, "broken.pdf") || !slices.Contains(got, "new.md") {
		t.Fatalf("default states: %v", got)
	}
	if got := list("parent_id=" + tickets + "&state=Error"); len(got.Data) != 1 || got.Data[0].ID != bad.ID {
		t.Fatalf("state=Error: %v", names(got))
	}
	if got := list("parent_id=" + tickets + "&ingest_status=Parsing,Error&state=Published,Processing,Error"); len(got.Data) != 2 {
		t.Fatalf("ingest_status filter: %v", names(got))
	}

	// Get one artifact.
	var a workspace.Artifact
	e.must("GET", "/api/v1/app/project/"+project+"/artifact/"+proc.ID, nil, 200, &a)
	if a.Name != "new.md" || a.State != "Processing" {
		t.Fatalf("get = %+v", a)
	}
	id := e.artifactID("Policies/refund-policy.md")
	e.must("GET", "/api/v1/app/project/"+project+"/artifact/"+id+"?include_content=true", nil, 200, &a)
	if !strings.Contains(a.Content, "Annual plans can be refunded in full within 30 days") {
		t.Fatalf("content = %q", a.Content)
	}
	var noContent workspace.Artifact
	e.must("GET", "/api/v1/app/project/"+project+"/artifact/"+id, nil, 200, &noContent)
	if noContent.Content != "" || noContent.Name != "refund-policy.md" {
		t.Fatal("content returned without include_content")
	}

	for _, tc := range []struct {
		path string
		want int
	}{
		{"/api/v1/app/project/" + project + "/artifact/artifact_nope", 404},
		{"/api/v1/app/project/proj_nope/artifact/" + id, 404},
		{"/api/v1/app/project/proj_nope/artifact", 404},
		{"/api/v1/app/project/" + project + "/artifact?parent_id=artifact_nope", 404},
		{"/api/v1/app/project/" + project + "/artifact?page_size=0", 400},
		{"/api/v1/app/project/" + project + "/artifact?page_size=5000", 400},
		{"/api/v1/app/project/" + project + "/artifact?order_by=Size", 400},
		{"/api/v1/app/project/" + project + "/artifact?order=UP", 400},
		{"/api/v1/app/project/" + project + "/artifact?include_descendants=yes", 400},
		{"/api/v1/app/project/" + project + "/artifact?keep_ancestors=1", 400},
		{"/api/v1/app/project/" + project + "/artifact?filter_by_parent=TRUE", 400},
	} {
		if status, body := e.do("GET", tc.path, nil); status != tc.want {
			t.Errorf("GET %s: %d %s, want %d", tc.path, status, body, tc.want)
		}
	}
}

func TestAddDir(t *testing.T) {
	fsys := fstest.MapFS{
		"docs/a.md":          {Data: []byte("# A\n\nAlpha beta gamma delta.")},
		"docs/sub/b.txt":     {Data: []byte("Bravo charlie delta echo.")},
		"docs/sub/image.png": {Data: []byte{0x89, 'P', 'N', 'G'}},
		"docs/.hidden.md":    {Data: []byte("hidden")},
		"docs/_drafts/c.md":  {Data: []byte("draft")},
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	sim := simulator.New(simulator.Config{Now: func() time.Time { return now }})
	defer sim.Close()
	if err := sim.AddDir(fsys, "docs"); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range sim.Artifacts() {
		got = append(got, a.Name+":"+a.Type)
	}
	if want := []string{"a.md:Document", "sub:Folder", "b.txt:Document"}; !slices.Equal(got, want) {
		t.Fatalf("artifacts = %v, want %v", got, want)
	}
	b, ok := sim.ArtifactByPath("sub/b.txt")
	sub, _ := sim.ArtifactByPath("sub")
	if !ok || b.Content != "Bravo charlie delta echo." || b.ParentID == nil || *b.ParentID != sub.ID || sub.ChildCount != 1 {
		t.Fatalf("b.txt = %+v (sub %+v)", b, sub)
	}

	// Ids depend on the path only: a second simulator gets the same ids.
	sim2 := simulator.New(simulator.Config{})
	defer sim2.Close()
	if err := sim2.AddDir(fsys, "docs"); err != nil {
		t.Fatal(err)
	}
	b2, _ := sim2.ArtifactByPath("sub/b.txt")
	if b2.ID != b.ID || !strings.HasPrefix(b.ID, "artifact_") || len(b.ID) != len("artifact_")+16 {
		t.Fatalf("ids %q and %q differ or are malformed", b.ID, b2.ID)
	}
	// Seeding the same tree twice gives fresh ids, not collisions.
	if err := sim2.AddDir(fsys, "docs"); err != nil {
		t.Fatal(err)
	}
	if n := len(sim2.Artifacts()); n != 6 {
		t.Fatalf("after seeding twice: %d artifacts", n)
	}

	if err := sim.SetUpdatedAt(b.ID, now.Add(-48*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if a, _ := sim.Artifact(b.ID); a.UpdatedAt != "2025-12-31T03:04:05Z" || a.CreatedAt != "2026-01-02T03:04:05Z" {
		t.Fatalf("after SetUpdatedAt: %+v", a)
	}
	if err := sim.SetUpdatedAt("artifact_nope", now); err == nil {
		t.Fatal("SetUpdatedAt on an unknown id succeeded")
	}

	bad := fstest.MapFS{"x/bad.md": {Data: []byte{0xff, 0xfe}}}
	if err := sim.AddDir(bad, "x"); err == nil || !strings.Contains(err.Error(), "x/bad.md") {
		t.Fatalf("non-UTF-8 file: %v", err)
	}
	if err := sim.AddDir(fsys, "missing"); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("missing root: %v", err)
	}
}

func TestAddDirSymlinks(t *testing.T) {
	dir, elsewhere := t.TempDir(), t.TempDir()
	target := filepath.Join(elsewhere, "shared-note.md")
	if err := os.WriteFile(target, []byte("A note kept outside the corpus and linked into it."), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, filepath.Join(dir, "linked.md")); err != nil {
		t.Skipf("no symlinks here: %v", err)
	}
	if err := os.Symlink(dir, filepath.Join(dir, "loop")); err != nil { // a cycle if followed
		t.Fatal(err)
	}
	sim := simulator.New(simulator.Config{})
	defer sim.Close()
	if err := sim.AddDir(os.DirFS(dir), "."); err != nil {
		t.Fatal(err)
	}
	arts := sim.Artifacts()
	if len(arts) != 1 || arts[0].Name != "linked.md" || arts[0].Type != "Document" {
		t.Fatalf("artifacts = %+v, want only the linked file", arts)
	}
	if a, ok := sim.ArtifactByPath("linked.md"); !ok || !strings.Contains(a.Content, "linked into it") {
		t.Fatalf("linked.md = %+v %v", a, ok)
	}
}

func TestAddArtifact(t *testing.T) {
	sim := simulator.New(simulator.Config{Now: func() time.Time { return fixedNow }})
	defer sim.Close()
	folder := sim.AddArtifact(simulator.ArtifactSpec{Name: "Bulk", Type: "Folder"})
	if folder.IngestStatus != "NotApplicable" || folder.State != "Published" {
		t.Fatalf("folder = %+v", folder)
	}
	for i := range 200 {
		sim.AddArtifact(simulator.ArtifactSpec{Name: fmt.Sprintf("doc-%03d.md", i), ParentID: folder.ID, Content: "Some text here for the doc."})
	}
	if a, _ := sim.Artifact(folder.ID); a.ChildCount != 200 {
		t.Fatalf("child_count = %d", a.ChildCount)
	}
	explicit := sim.AddArtifact(simulator.ArtifactSpec{ID: "artifact_2b4d6f8a1c3e5a7b", Name: "handbook.md", Content: "x",
		UpdatedAt: fixedNow.Add(-time.Hour)})
	if explicit.ID != "artifact_2b4d6f8a1c3e5a7b" || explicit.UpdatedAt != "2026-06-15T08:00:00Z" {
		t.Fatalf("explicit = %+v", explicit)
	}
	for name, spec := range map[string]simulator.ArtifactSpec{
		"unknown parent": {Name: "x", ParentID: "artifact_nope"},
		"parent is doc":  {Name: "x", ParentID: explicit.ID},
		"duplicate id":   {Name: "x", ID: explicit.ID},
		"no name":        {},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: AddArtifact did not panic", name)
				}
			}()
			sim.AddArtifact(spec)
		}()
	}
}

func TestTokenNeverLogged(t *testing.T) {
	var logs syncLog
	e := newEnv(t, simulator.Config{Token: "tok-do-not-log", Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	e.must("GET", "/api/v1/app/me", nil, 200, nil)
	e.token = "wrong-token-also-secret"
	if status, _ := e.do("GET", "/api/v1/app/me", nil); status != 401 {
		t.Fatal(status)
	}
	out := logs.String()
	if !strings.Contains(out, "route=\"GET /api/v1/app/me\"") || !strings.Contains(out, "status=401") {
		t.Fatalf("expected one debug line per request, got:\n%s", out)
	}
	if strings.Contains(out, "tok-do-not-log") || strings.Contains(out, "wrong-token-also-secret") {
		t.Fatalf("a token reached the log:\n%s", out)
	}
}

func TestBodyTooLarge(t *testing.T) {
	e := newEnv(t, simulator.Config{MaxBodyBytes: 4 << 10})
	big := `{"messages":[{"role":"user","content":[{"type":"text","text":"` + strings.Repeat("a", 5<<10) + `"}]}]}`
	status, body := e.do("POST", "/api/v1/app/chat", big)
	if status != http.StatusRequestEntityTooLarge || !strings.Contains(errText(body), "request body exceeds") {
		t.Fatalf("%d %s", status, body[:min(len(body), 200)])
	}
	if status, _ := e.do("POST", "/api/v1/app/chat/validate", big[:3<<10]+`"}]}]}`); status != 204 {
		t.Fatalf("a body under the limit: %d", status)
	}
}

// syncLog is a log sink safe for concurrent writes.
type syncLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Paging through a listing is served from the list of its first page; a
// new artifact or a changed state shows in the next listing.
func TestListingSeesChangesBetweenListings(t *testing.T) {
	sim := simulator.New(simulator.Config{})
	defer sim.Close()
	folder := sim.AddArtifact(simulator.ArtifactSpec{Name: "F", Type: workspace.ArtifactTypeFolder})
	var last workspace.Artifact
	for i := range 25 {
		last = sim.AddArtifact(simulator.ArtifactSpec{Name: fmt.Sprintf("d%02d.md", i), ParentID: folder.ID, Content: "x"})
	}
	srv := httptest.NewServer(sim)
	defer srv.Close()
	c, err := workspace.New(srv.URL, workspace.WithOrg("default"))
	if err != nil {
		t.Fatal(err)
	}
	count := func() int {
		n := 0
		for _, err := range c.Artifacts(context.Background(), simulator.DefaultProjectID,
			workspace.ArtifactQuery{ParentID: folder.ID, PageParams: workspace.PageParams{PageSize: 10}}) {
			if err != nil {
				t.Fatal(err)
			}
			n++
		}
		return n
	}
	if n := count(); n != 25 {
		t.Fatalf("listed %d, want 25", n)
	}
	sim.AddArtifact(simulator.ArtifactSpec{Name: "new.md", ParentID: folder.ID, Content: "x"})
	if n := count(); n != 26 {
		t.Errorf("after adding one: listed %d, want 26", n)
	}
	if err := sim.SetArtifactState(last.ID, workspace.ArtifactStateError, ""); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 25 {
		t.Errorf("after one went to Error: listed %d, want 25", n)
	}
}
