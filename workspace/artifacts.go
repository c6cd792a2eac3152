package workspace

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"net/http"
	"strings"
)

// DefaultIterPageSize is the page size Artifacts and Interactions ask for
// when the query sets none.
const DefaultIterPageSize = 100

// ListArtifacts returns one page of a project's artifacts
// (GET /app/project/{projectId}/artifact) filtered by q; see ArtifactQuery
// for the server's defaults (root level only, Published and Processing).
func (c *Client) ListArtifacts(ctx context.Context, projectID string, q ArtifactQuery) (*Page[Artifact], error) {
	p, err := seg("project id", projectID)
	if err != nil {
		return nil, fmt.Errorf("workspace: list artifacts: %w", err)
	}
	var page Page[Artifact]
	if err := c.do(ctx, call{method: "GET", path: "/app/project/" + p + "/artifact", query: q.values(), out: &page, kind: kindPage}); err != nil {
		return nil, err
	}
	return &page, nil
}

// Artifacts iterates over every artifact matching q, following
// has_next_page page after page. Paging starts at q.Page (default 1) with
// q.PageSize (default DefaultIterPageSize); when q.After is set it follows
// next_cursor instead. An artifact already seen on a recent page (the list
// shifted while paging) is skipped; see paginate. A server refusing the page size (422
// naming page_size) is asked again with smaller pages, and a server ignoring
// the page parameter is followed by its next_cursor (see paginate). The
// first error is yielded once and ends the iteration, as does a page that
// brings nothing new while claiming a next page with no cursor to follow.
func (c *Client) Artifacts(ctx context.Context, projectID string, q ArtifactQuery) iter.Seq2[Artifact, error] {
	return paginate(ctx, q.PageParams, "artifacts of project "+projectID,
		func(ctx context.Context, p PageParams) (*Page[Artifact], error) {
			q2 := q
			q2.PageParams = p
			return c.ListArtifacts(ctx, projectID, q2)
		},
		func(a Artifact) string { return a.ID })
}

// GetArtifact returns one artifact
// (GET /app/project/{projectId}/artifact/{artifactId}); set
// q.IncludeContent to receive its content.
func (c *Client) GetArtifact(ctx context.Context, projectID, artifactID string, q ArtifactGetQuery) (*Artifact, error) {
	p, err := seg("project id", projectID)
	if err != nil {
		return nil, fmt.Errorf("workspace: get artifact: %w", err)
	}
	a, err := seg("artifact id", artifactID)
	if err != nil {
		return nil, fmt.Errorf("workspace: get artifact: %w", err)
	}
	var art Artifact
	if err := c.do(ctx, call{method: "GET", path: "/app/project/" + p + "/artifact/" + a, query: q.values(), out: &art, kind: kindArtifact}); err != nil {
		return nil, err
	}
	return &art, nil
}

// paginate walks pages from start until has_next_page is false. It skips
// items whose id is among the last seenWindow it yielded (a list that
// shifts while it is paged repeats the end of the page before) and stops
// with an error when a page claiming a next page brings nothing new. What
// it holds does not grow with the listing: a million artifacts are listed
// remembering 10,000 ids. It copes with two server
// variants (docs/compatibility.md):
//
//   - a maximum page_size: a 422 naming page_size makes it retry the page
//     with half the size, down to MinIterPageSize, and keep that size for
//     the rest of the listing;
//   - cursor-only paging (page ignored): a page that brings nothing new
//     while the previous page gave a next_cursor switches, once, to
//     following after=<next_cursor>.
func paginate[T any](ctx context.Context, start PageParams, what string,
	fetch func(context.Context, PageParams) (*Page[T], error), id func(T) string) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		var zero T
		p := start
		if p.PageSize == 0 {
			p.PageSize = DefaultIterPageSize
		}
		cursorMode := p.After != ""
		switched := false // switched from page to cursor paging
		if !cursorMode && p.Page == 0 {
			p.Page = 1
		}
		prevCursor := ""
		seen := newRecentIDs(seenWindow)
		for {
			page, err := fetch(ctx, p)
			if err != nil {
				if smaller, ok := smallerPageSize(err, p.PageSize); ok {
					if !cursorMode {
						// Ask again from the first item of the failed page:
						// items seen again are skipped.
						p.Page = (p.Page-1)*p.PageSize/smaller + 1
					}
					p.PageSize = smaller
					continue
				}
				yield(zero, err)
				return
			}
			fresh := 0
			for _, it := range page.Data {
				k := id(it)
				if k != "" {
					if seen.has(k) {
						continue
					}
					seen.add(k)
				}
				fresh++
				if !yield(it, nil) {
					return
				}
			}
			if !page.HasNextPage {
				return
			}
			if fresh == 0 && !cursorMode && !switched && prevCursor != "" {
				// The server ignored page (it answered the first page
				// again): follow its cursors from where the last new page
				// ended.
				cursorMode, switched = true, true
				p.Page, p.After = 0, prevCursor
				continue
			}
			if fresh == 0 {
				yield(zero, fmt.Errorf("workspace: listing %s: page %s brought no new items but has_next_page is true; stopping", what, pageLabel(p)))
				return
			}
			prevCursor = page.NextCursor
			if cursorMode {
				if page.NextCursor == "" || page.NextCursor == p.After {
					yield(zero, fmt.Errorf("workspace: listing %s: has_next_page is true but next_cursor does not advance after cursor %q", what, p.After))
					return
				}
				p.After = page.NextCursor
			} else {
				p.Page++
			}
		}
	}
}

// seenWindow is how many of the ids it yielded last paginate remembers to
// skip them when they come again: a hundred pages of the default size.
const seenWindow = 10000

// recentIDs remembers the last ids added, up to a bound, oldest forgotten
// first.
type recentIDs struct {
	ring []string
	next int // where the next id goes once the ring is full
	set  map[string]struct{}
}

func newRecentIDs(n int) *recentIDs {
	return &recentIDs{ring: make([]string, 0, n), set: make(map[string]struct{}, n)}
}

func (r *recentIDs) has(id string) bool { _, ok := r.set[id]; return ok }

func (r *recentIDs) add(id string) {
	if len(r.ring) < cap(r.ring) {
		r.ring = append(r.ring, id)
	} else {
		delete(r.set, r.ring[r.next])
		r.ring[r.next] = id
		r.next = (r.next + 1) % len(r.ring)
	}
	r.set[id] = struct{}{}
}

// MinIterPageSize is the smallest page size the listing iterators fall
// back to when a server refuses a larger one: the documented default
// (workspace-api.md §3), which every server accepts.
const MinIterPageSize = 20

// smallerPageSize reports the page size to retry with after err: half of
// size, at least MinIterPageSize, when err is a 422 whose body names
// page_size (the FastAPI answer to a page_size beyond the server's
// maximum) and size is above MinIterPageSize.
func smallerPageSize(err error, size int) (int, bool) {
	var ae *APIError
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusUnprocessableEntity || size <= MinIterPageSize {
		return 0, false
	}
	if !strings.Contains(ae.Body, "page_size") && !strings.Contains(ae.Message, "page_size") {
		return 0, false
	}
	return max(size/2, MinIterPageSize), true
}

func pageLabel(p PageParams) string {
	if p.After != "" {
		return fmt.Sprintf("after cursor %q", p.After)
	}
	return fmt.Sprint(p.Page)
}

// Size returns the size in bytes of the artifact's content as the API
// reports it, and whether it does: props.content_length (a Document's, as
// uploaded; workspace-api.md §8.5, required by the guide but not by the
// spec), else the text of an InlineText's props.content, else the content
// itself when the listing included it (include_content). The artifact DTO
// has no size field of its own.
func (a *Artifact) Size() (int64, bool) {
	var props struct {
		ContentLength json.Number `json:"content_length"`
		Content       *string     `json:"content"`
	}
	if len(a.Props) > 0 && json.Unmarshal(a.Props, &props) == nil {
		if n, err := props.ContentLength.Int64(); err == nil && n >= 0 {
			return n, true
		}
		if props.Content != nil && a.Type == ArtifactTypeInlineText {
			return int64(len(*props.Content)), true
		}
	}
	if a.Content != "" {
		return int64(len(a.Content)), true
	}
	return 0, false
}
