package simulator

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/threadmill/threadmill/workspace"
)

// maxPageSize is the largest page_size accepted.
const maxPageSize = 1000

// paginate cuts items into the page the query asks for (workspace-api.md §3):
// page (1-based, default 1), page_size (default 20, at most 1000),
// page_order (ASC or DESC: DESC reverses the list), after (a cursor from
// next_cursor; it wins over page) and total_count=true. Cursors are opaque
// strings "c<offset>". cp.MaxPageSize answers a page_size beyond it with
// 422 and a FastAPI-style detail; cp.Pagination = PaginationCursor ignores
// page (every request without after is the first page).
func paginate[T any](items []T, q url.Values, cp Compat) (workspace.Page[T], *httpError) {
	if e := cp.checkPageSize(q.Get("page_size")); e != nil {
		return workspace.Page[T]{}, e
	}
	if cp.Pagination == PaginationCursor {
		q = maps.Clone(q)
		q.Del("page")
	}
	var c checker
	page, size := 1, 20
	if v := q.Get("page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			c.addf("page must be an integer >= 1, got %q", v)
		}
		page = n
	}
	if v := q.Get("page_size"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxPageSize {
			c.addf("page_size must be an integer in [1, %d], got %q", maxPageSize, v)
		}
		size = n
	}
	switch v := strings.ToUpper(q.Get("page_order")); v {
	case "", "ASC":
	case "DESC":
		items = slices.Clone(items)
		slices.Reverse(items)
	default:
		c.addf("page_order must be ASC or DESC, got %q", q.Get("page_order"))
	}
	offset := 0
	if v := q.Get("after"); v != "" {
		n, err := strconv.Atoi(strings.TrimPrefix(v, "c"))
		if err != nil || !strings.HasPrefix(v, "c") || n < 0 {
			c.addf("after %q is not a cursor returned by this server", v)
		}
		offset = n
	} else {
		offset = (page - 1) * size
	}
	if e := c.err(); e != nil {
		return workspace.Page[T]{}, e
	}
	var out workspace.Page[T]
	out.Data = []T{}
	if offset < len(items) {
		out.Data = items[offset:min(offset+size, len(items))]
	}
	out.HasNextPage = offset+size < len(items)
	out.HasPreviousPage = offset > 0
	if out.HasNextPage {
		out.NextCursor = "c" + strconv.Itoa(offset+size)
	}
	if out.HasPreviousPage {
		out.PreviousCursor = "c" + strconv.Itoa(max(0, offset-size))
	}
	if q.Get("total_count") == "true" {
		n := workspace.Count(len(items))
		out.TotalCount = &n
	}
	return out, nil
}

// ---- threads ----

func (s *Server) handleCreateThread(w http.ResponseWriter, r *http.Request) *httpError {
	if e := s.checkProject(r); e != nil {
		return e
	}
	obj, _, e := readBody(r, s.maxBody)
	if e != nil {
		return e
	}
	name, vis, e := parseThreadBody(obj, true)
	if e != nil {
		return e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t := &thread{dto: workspace.Thread{
		ID:         s.store.nextID("thread"),
		ProjectID:  s.projectID,
		Name:       *name,
		Visibility: *vis,
		State:      "Active",
		CreatedAt:  s.now().UTC().Format(time.RFC3339Nano),
	}}
	s.store.threads[t.dto.ID] = t
	s.store.threadOrder = append(s.store.threadOrder, t)
	s.counters.ThreadsCreated++
	writeJSON(w, http.StatusOK, t.dto)
	return nil
}

func (s *Server) handleListThreads(w http.ResponseWriter, r *http.Request) *httpError {
	if e := s.checkProject(r); e != nil {
		return e
	}
	states := csv(r.URL.Query().Get("state"), "Active")
	s.mu.Lock()
	var list []workspace.Thread
	for _, t := range s.store.threadOrder {
		if slices.Contains(states, t.dto.State) {
			list = append(list, t.dto)
		}
	}
	s.mu.Unlock()
	page, e := paginate(list, r.URL.Query(), s.compat)
	if e != nil {
		return e
	}
	writeJSON(w, http.StatusOK, page)
	return nil
}

// threadLocked returns the live thread of the path, or a 404.
func (s *Server) threadLocked(r *http.Request) (*thread, *httpError) {
	id := r.PathValue("threadId")
	t := s.store.threads[id]
	if t == nil || t.dto.State == "Deleted" {
		return nil, errorf(http.StatusNotFound, "thread %q not found", id)
	}
	return t, nil
}

func (s *Server) handleGetThread(w http.ResponseWriter, r *http.Request) *httpError {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, e := s.threadLocked(r)
	if e != nil {
		return e
	}
	writeJSON(w, http.StatusOK, t.dto)
	return nil
}

func (s *Server) handleUpdateThread(w http.ResponseWriter, r *http.Request) *httpError {
	obj, _, e := readBody(r, s.maxBody)
	if e != nil {
		return e
	}
	name, vis, e := parseThreadBody(obj, false)
	if e != nil {
		return e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t, e := s.threadLocked(r)
	if e != nil {
		return e
	}
	if name != nil {
		t.dto.Name = *name
	}
	if vis != nil {
		t.dto.Visibility = *vis
	}
	writeJSON(w, http.StatusOK, t.dto)
	return nil
}

// handleDeleteThread marks the thread Deleted (listed only with
// state=Deleted; 404 on every other route), cancels its processing
// interactions and answers 200 with the thread.
func (s *Server) handleDeleteThread(w http.ResponseWriter, r *http.Request) *httpError {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, e := s.threadLocked(r)
	if e != nil {
		return e
	}
	now := time.Now()
	for _, in := range t.interactions {
		s.finishLocked(in, workspace.StopReasonCancelled, now)
		in.deleted = true
	}
	t.dto.State = "Deleted"
	writeJSON(w, http.StatusOK, t.dto)
	return nil
}

// ---- interactions ----

func (s *Server) handleCreateInteraction(w http.ResponseWriter, r *http.Request) *httpError {
	obj, _, e := readBody(r, s.maxBody)
	if e != nil {
		return e
	}
	s.mu.Lock()
	_, e = s.threadLocked(r)
	s.mu.Unlock()
	if e != nil {
		return e
	}
	body, e := parseCreateInteraction(obj, r.PathValue("threadId"))
	if e != nil {
		return e
	}

	s.knobMu.Lock()
	async, latency, perTok, jitter := s.async, s.latency, s.perTok, s.jitter
	if jitter > 0 {
		latency += time.Duration((s.rng.Float64()*2 - 1) * float64(jitter))
		latency = max(0, latency)
	}
	fails := s.rng.Float64() < s.faults.InteractionError
	lost := s.rng.Float64() < s.faults.LostCreate
	lagging := s.rng.Float64() < s.faults.ReplicaLag
	lag := cmp.Or(s.faults.LagDuration, DefaultLagDuration)
	s.knobMu.Unlock()

	s.mu.Lock()
	srcs, e := s.sourcesLocked(body.ArtifactIDs, body.AllArtifacts)
	s.mu.Unlock()
	if e != nil {
		return e
	}
	// The answer is computed outside the lock: sources are immutable.
	invalid := s.invalidJSON(r.PathValue("threadId"), body.PGPT)
	ans := decorate(body.PGPT, srcs, respond(body.PGPT, srcs, body.Agent), invalid)
	chunks := splitChunks(ans.text)
	cum := cumTokens(chunks)
	reqJSON, err := encodeJSON(body.PGPT)
	if err != nil {
		return errorf(http.StatusInternalServerError, "simulator: encoding the request: %v", err)
	}

	s.mu.Lock()
	t, e := s.threadLocked(r) // it may have been deleted meanwhile
	if e != nil {
		s.mu.Unlock()
		return e
	}
	in := &interaction{
		id:       s.store.nextID("inter"),
		msgID:    s.store.nextID("msg"),
		thread:   t,
		created:  s.now(),
		req:      reqJSON,
		wantJSON: wantsJSON(body.PGPT) != nil,
		artIDs:   body.ArtifactIDs,
		all:      body.AllArtifacts,
		ans:      ans,
		state:    workspace.StateProcessing,
	}
	f := &flight{
		chunks:  chunks,
		cumTok:  cum,
		start:   time.Now(),
		firstAt: latency,
		perTok:  perTok,
		fails:   fails,
		done:    make(chan struct{}),
	}
	in.flight = f
	if in.artIDs == nil {
		in.artIDs = []string{}
	}
	for i, id := range in.artIDs {
		if a := s.store.artifacts[id]; a != nil {
			in.artIDs[i] = a.dto.ID // the artifact's copy: one string less to keep
		}
	}
	if lagging {
		in.hiddenUntil = f.start.Add(lag)
		s.counters.Faults["replica_lag"]++
	}
	s.store.interactions[in.id] = in
	t.interactions = append(t.interactions, in)
	s.store.interactionOrder = append(s.store.interactionOrder, in)
	s.counters.InteractionsCreated++
	if cid := body.PGPT.CorrelationID; cid != "" {
		s.counters.Correlations[cid]++
	}
	if fails {
		s.counters.Faults["interaction_error"]++
	}
	if d := time.Until(f.completeAt(ans.usage.OutputTokens)); d <= 0 {
		s.finishLocked(in, "", time.Now())
	} else if !s.closed {
		f.timer = time.AfterFunc(d, func() {
			s.mu.Lock()
			s.finishLocked(in, "", time.Now())
			s.mu.Unlock()
		})
	}
	if lost {
		s.counters.Faults["lost_create"]++
	}
	s.mu.Unlock()

	if lost {
		// The interaction exists and runs, but the proxy gave up on it.
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(http.StatusGatewayTimeout)
		fmt.Fprint(w, gatewayTimeoutPage)
		return nil
	}
	if !async {
		select {
		case <-f.done:
		case <-r.Context().Done():
			return &httpError{} // the client is gone; the interaction goes on
		case <-s.stop:
		}
	}
	s.mu.Lock()
	dto := s.viewLocked(in)
	s.mu.Unlock()
	writeJSON(w, http.StatusCreated, dto)
	return nil
}

// sourcesLocked resolves the artifacts of an interaction. Folders expand to
// their usable descendants; all=true takes every usable artifact of the
// project. An unknown id is a 404; an artifact that is not usable (not
// Published, or not ingested) is a 400.
func (s *Server) sourcesLocked(ids []string, all bool) ([]source, *httpError) {
	var out []source
	add := func(a *artifact) {
		out = append(out, source{id: a.dto.ID, name: a.dto.Name, content: a.dto.Content, sents: s.store.analyses.of(a)})
	}
	if all {
		for _, a := range s.store.artifactOrder {
			if a.usable() {
				add(a)
			}
		}
		return out, nil
	}
	var missing []string
	var c checker
	for i, id := range ids {
		a := s.store.artifacts[id]
		switch {
		case a == nil || a.dto.State == "Deleted":
			missing = append(missing, id)
		case a.dto.Type == workspace.ArtifactTypeFolder:
			for _, d := range s.store.descendants(id) {
				if d.usable() {
					add(d)
				}
			}
		case !a.usable():
			c.addf("artifact_ids[%d]: artifact %q is not ready to use as context (state %s, ingest_status %s)",
				i, id, a.dto.State, a.dto.IngestStatus)
		default:
			add(a)
		}
	}
	if len(missing) > 0 {
		return nil, &httpError{status: http.StatusNotFound,
			msg:  "artifact_ids: artifact(s) not found in project " + s.projectID + ": " + strings.Join(missing, ", "),
			errs: missing}
	}
	return out, c.err()
}

func (s *Server) handleListInteractions(w http.ResponseWriter, r *http.Request) *httpError {
	s.mu.Lock()
	t, e := s.threadLocked(r)
	var list []workspace.Interaction
	if e == nil {
		now := time.Now()
		for _, in := range t.interactions {
			if !in.deleted && !now.Before(in.hiddenUntil) {
				list = append(list, s.viewLocked(in))
			}
		}
	}
	s.mu.Unlock()
	if e != nil {
		return e
	}
	page, e := paginate(list, r.URL.Query(), s.compat)
	if e != nil {
		return e
	}
	writeJSON(w, http.StatusOK, page)
	return nil
}

// interactionLocked returns the live interaction of the path, or a 404.
func (s *Server) interactionLocked(r *http.Request) (*interaction, *httpError) {
	id := r.PathValue("interactionId")
	in := s.store.interactions[id]
	if in == nil || in.deleted || time.Now().Before(in.hiddenUntil) {
		return nil, errorf(http.StatusNotFound, "interaction %q not found", id)
	}
	return in, nil
}

func (s *Server) handleGetInteraction(w http.ResponseWriter, r *http.Request) *httpError {
	s.mu.Lock()
	defer s.mu.Unlock()
	in, e := s.interactionLocked(r)
	if e != nil {
		return e
	}
	writeJSON(w, http.StatusOK, s.viewLocked(in))
	return nil
}

// handleDeleteInteraction cancels a processing interaction, removes it and
// answers 200 with its last view.
func (s *Server) handleDeleteInteraction(w http.ResponseWriter, r *http.Request) *httpError {
	s.mu.Lock()
	defer s.mu.Unlock()
	in, e := s.interactionLocked(r)
	if e != nil {
		return e
	}
	s.finishLocked(in, workspace.StopReasonCancelled, time.Now())
	in.deleted = true
	writeJSON(w, http.StatusOK, s.viewLocked(in))
	return nil
}

// handleCancel cancels a processing interaction: 204, and the interaction
// ends Completed with stop_reason "cancelled" and the output produced so
// far (Compat.CancelEnd: or Error, or stop_reason "stop"). A finished
// interaction answers 409.
func (s *Server) handleCancel(w http.ResponseWriter, r *http.Request) *httpError {
	s.mu.Lock()
	defer s.mu.Unlock()
	in, e := s.interactionLocked(r)
	if e != nil {
		return e
	}
	s.refreshLocked(in)
	if in.state != workspace.StateProcessing {
		return errorf(http.StatusConflict, "interaction %q has already finished (state %s)", in.id, in.state)
	}
	s.finishLocked(in, workspace.StopReasonCancelled, time.Now())
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// ---- chat ----

// handleChat answers a one-shot chat after the configured latency, from the
// prompt text itself (the body carries no artifact ids).
func (s *Server) handleChat(w http.ResponseWriter, r *http.Request) *httpError {
	obj, _, e := readBody(r, s.maxBody)
	if e != nil {
		return e
	}
	req, e := parseChatRequest(obj, "")
	if e != nil {
		return e
	}
	invalid := s.invalidJSON("", req)
	ans := decorate(req, nil, respond(req, nil, workspace.AgentDefault), invalid)
	s.knobMu.Lock()
	latency, perTok, jitter := s.latency, s.perTok, s.jitter
	if jitter > 0 {
		latency = max(0, latency+time.Duration((s.rng.Float64()*2-1)*float64(jitter)))
	}
	s.knobMu.Unlock()
	if err := sleepCtx(r.Context(), s.stop, latency+time.Duration(ans.usage.OutputTokens)*perTok); err != nil {
		return &httpError{}
	}
	usage := ans.usage
	resp := workspace.ChatResponse{
		Role:       workspace.RoleAssistant,
		Content:    ans.content(ans.text),
		Model:      Model,
		StopReason: ans.stopReason,
		Usage:      &usage,
	}
	if s.compat.ChatUsage == ChatUsageWithout {
		// The guide's example (workspace-api.md §7.1): no usage, no
		// stop_reason. The counters still count the tokens spent.
		resp.Usage, resp.StopReason = nil, ""
	}
	s.mu.Lock()
	resp.ID = s.store.nextID("chat")
	if len(s.store.chats) >= 2*ChatsKept { // forget the older ones, a copy every ChatsKept chats
		s.store.chats = slices.Clone(s.store.chats[len(s.store.chats)-ChatsKept:])
	}
	s.store.chats = append(s.store.chats, ChatRecord{Request: req, Response: resp})
	s.counters.ChatsAnswered++
	if req.CorrelationID != "" {
		s.counters.Correlations[req.CorrelationID]++
	}
	s.counters.TokensIn += int64(ans.usage.InputTokens)
	s.counters.TokensOut += int64(ans.usage.OutputTokens)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, resp)
	return nil
}

// handleValidate checks a chat body: 204 when valid, else 400 with
// {"valid": false, "errors": [...], "message": "..."} (or the shape of
// Compat.Validate400).
func (s *Server) handleValidate(w http.ResponseWriter, r *http.Request) *httpError {
	s.mu.Lock()
	s.counters.Validations++
	s.mu.Unlock()
	obj, _, e := readBody(r, s.maxBody)
	if e == nil {
		_, e = parseChatRequest(obj, "")
	}
	if e != nil {
		if e.status == http.StatusBadRequest {
			s.mu.Lock()
			s.counters.ValidationsFailed++
			s.mu.Unlock()
			errs := e.errs
			if len(errs) == 0 {
				errs = []string{e.msg}
			}
			s.compat.validate400(w, e.msg, errs)
			return nil
		}
		return e
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func sleepCtx(ctx context.Context, stop <-chan struct{}, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-stop:
		return nil
	}
}

// ---- artifacts ----

// csv splits a comma-separated query value; empty gives def.
func csv(v string, def ...string) []string {
	if strings.TrimSpace(v) == "" {
		return def
	}
	var out []string
	for p := range strings.SplitSeq(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// handleListArtifacts lists artifacts with the filters of workspace-api.md
// §8.3: state (default Published,Processing), ingest_status, type, sub_type
// (the simulator's artifacts have none, so any value matches nothing),
// source (every seeded artifact is User), parent_id (absent: the root level
// only), include_descendants, filter_by_text (case-insensitive substring of
// name or description), keep_ancestors (with filter_by_text, the ancestors
// of matches too), filter_by_parent (only artifacts that have a parent),
// created_by (the simulated user's id matches every artifact),
// order_by=Alphabetical with order ASC or DESC (default: creation order),
// include_content=true, and the pagination parameters. resolve_links and
// include=User are accepted; there are no Link artifacts and no created_by
// objects to resolve.
func (s *Server) handleListArtifacts(w http.ResponseWriter, r *http.Request) *httpError {
	if e := s.checkProject(r); e != nil {
		return e
	}
	q := r.URL.Query()
	states := csv(q.Get("state"), workspace.ArtifactStatePublished, workspace.ArtifactStateProcessing)
	ingest := csv(q.Get("ingest_status"))
	types := csv(q.Get("type"))
	subTypes := csv(q.Get("sub_type"))
	sources := csv(q.Get("source"))
	createdBy := q.Get("created_by")
	parentID := q.Get("parent_id")
	var flags [5]bool
	for i, name := range []string{"include_descendants", "include_content", "keep_ancestors", "filter_by_parent", "resolve_links"} {
		v, e := boolParam(q, name)
		if e != nil {
			return e
		}
		flags[i] = v
	}
	desc, withContent, keepAncestors, onlyChildren := flags[0], flags[1], flags[2], flags[3]
	text := strings.ToLower(q.Get("filter_by_text"))
	orderBy, order := q.Get("order_by"), strings.ToUpper(q.Get("order"))
	if orderBy != "" && orderBy != "Alphabetical" {
		return errorf(http.StatusBadRequest, "order_by %q is not supported; use Alphabetical", orderBy)
	}
	descending := false
	switch order {
	case "", "ASC", "ASC_NULLS_FIRST", "ASC_NULLS_LAST":
	case "DESC", "DESC_NULLS_FIRST", "DESC_NULLS_LAST":
		descending = true
	default:
		return errorf(http.StatusBadRequest, "order %q is not one of ASC, DESC, ASC_NULLS_FIRST, ASC_NULLS_LAST, DESC_NULLS_FIRST, DESC_NULLS_LAST", q.Get("order"))
	}

	s.mu.Lock()
	if parentID != "" && s.store.artifacts[parentID] == nil {
		s.mu.Unlock()
		return errorf(http.StatusNotFound, "parent_id: artifact %q not found", parentID)
	}
	list := s.store.cachedList(q)
	if list == nil {
		list = s.listArtifactsLocked(listFilter{parentID: parentID, desc: desc, states: states, ingest: ingest, types: types,
			subTypes: subTypes, sources: sources, onlyChildren: onlyChildren, createdBy: createdBy, text: text,
			keepAncestors: keepAncestors, orderBy: orderBy, descending: descending})
		s.store.cacheList(q, list)
	}
	// Only the page's artifacts are rendered: a listing costs its page, not
	// the corpus (a page of 100 out of 100,000 used to copy all of them).
	refs, e := paginate(list, q, s.compat)
	if e == nil {
		page := workspace.Page[workspace.Artifact]{Data: make([]workspace.Artifact, len(refs.Data)),
			NextCursor: refs.NextCursor, PreviousCursor: refs.PreviousCursor,
			HasNextPage: refs.HasNextPage, HasPreviousPage: refs.HasPreviousPage, TotalCount: refs.TotalCount}
		for i, a := range refs.Data {
			page.Data[i] = s.compat.sized(a.view(withContent))
		}
		s.mu.Unlock()
		writeJSON(w, http.StatusOK, page)
		return nil
	}
	s.mu.Unlock()
	return e
}

func boolParam(q url.Values, name string) (bool, *httpError) {
	switch v := q.Get(name); v {
	case "", "false":
		return false, nil
	case "true":
		return true, nil
	default:
		return false, errorf(http.StatusBadRequest, "%s must be true or false, got %q", name, v)
	}
}

// handleGetArtifact returns one artifact; include_content=true adds its
// content.
func (s *Server) handleGetArtifact(w http.ResponseWriter, r *http.Request) *httpError {
	if e := s.checkProject(r); e != nil {
		return e
	}
	withContent, e := boolParam(r.URL.Query(), "include_content")
	if e != nil {
		return e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a, e := s.artifactLocked(r)
	if e != nil {
		return e
	}
	writeJSON(w, http.StatusOK, s.compat.sized(a.view(withContent)))
	return nil
}

// artifactLocked returns the artifact the path's {artifactId} names, or
// a 404 when there is none (or it was deleted). Call with s.mu held.
func (s *Server) artifactLocked(r *http.Request) (*artifact, *httpError) {
	id := r.PathValue("artifactId")
	a := s.store.artifacts[id]
	if a == nil || a.dto.State == "Deleted" {
		return nil, errorf(http.StatusNotFound, "artifact %q not found in project %s", id, s.projectID)
	}
	return a, nil
}

// listFilter is what a listing selects, besides paging.
type listFilter struct {
	parentID, createdBy, text, orderBy            string
	desc, onlyChildren, keepAncestors, descending bool
	states, ingest, types, subTypes, sources      []string
}

// listArtifactsLocked returns the artifacts f selects, in listing order.
func (s *Server) listArtifactsLocked(f listFilter) []*artifact {
	inScope := func(a *artifact) bool {
		switch {
		case f.parentID == "" && !f.desc && a.dto.ParentID != nil:
			return false
		case f.parentID != "" && !f.desc && (a.dto.ParentID == nil || *a.dto.ParentID != f.parentID):
			return false
		case f.parentID != "" && f.desc && !s.store.isBelow(a, f.parentID):
			return false
		case !slices.Contains(f.states, a.dto.State):
			return false
		case len(f.ingest) > 0 && !slices.Contains(f.ingest, a.dto.IngestStatus):
			return false
		case len(f.types) > 0 && !slices.Contains(f.types, a.dto.Type):
			return false
		case len(f.subTypes) > 0: // no simulated artifact has a sub_type
			return false
		case len(f.sources) > 0 && !slices.Contains(f.sources, a.dto.Source):
			return false
		case f.onlyChildren && a.dto.ParentID == nil:
			return false
		case f.createdBy != "" && f.createdBy != s.user().ID:
			return false
		}
		return true
	}
	matchesText := func(a *artifact) bool {
		return f.text == "" || strings.Contains(strings.ToLower(a.dto.Name), f.text) ||
			strings.Contains(strings.ToLower(a.dto.Description), f.text)
	}
	// keep_ancestors: the in-scope ancestors of a text match are listed too.
	ancestors := map[string]bool{}
	if f.text != "" && f.keepAncestors {
		for _, a := range s.store.artifactOrder {
			if inScope(a) && matchesText(a) {
				for p := a.dto.ParentID; p != nil; {
					ancestors[*p] = true
					pa := s.store.artifacts[*p]
					if pa == nil {
						break
					}
					p = pa.dto.ParentID
				}
			}
		}
	}
	var list []*artifact
	for _, a := range s.store.artifactOrder {
		if inScope(a) && (matchesText(a) || ancestors[a.dto.ID]) {
			list = append(list, a)
		}
	}
	if f.orderBy == "Alphabetical" {
		slices.SortStableFunc(list, func(a, b *artifact) int {
			return strings.Compare(strings.ToLower(a.dto.Name), strings.ToLower(b.dto.Name))
		})
	}
	if f.descending {
		slices.Reverse(list)
	}
	return list
}

// pagingParams are the query parameters that pick a page of a listing,
// not what it lists.
var pagingParams = []string{"page", "page_size", "page_order", "after", "before", "first", "last", "total_count"}

// listKey is the filters of a listing query, without its paging.
func listKey(q url.Values) string {
	k := url.Values{}
	for name, v := range q {
		if !slices.Contains(pagingParams, name) {
			k[name] = v
		}
	}
	return k.Encode()
}

// cachedList returns the list cached for q's filters, nil when the corpus
// changed since or another listing came between.
func (st *store) cachedList(q url.Values) []*artifact {
	c := &st.listCache
	if c.list == nil || c.version != st.version || c.key != listKey(q) {
		return nil
	}
	return c.list
}

// cacheList keeps list as the result of q's filters.
func (st *store) cacheList(q url.Values, list []*artifact) {
	if list == nil {
		list = []*artifact{}
	}
	st.listCache.key, st.listCache.version, st.listCache.list = listKey(q), st.version, list
}
