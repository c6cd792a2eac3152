package workspace

import (
	"context"
	"fmt"
	"iter"
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
// next_cursor instead. An artifact already seen on an earlier page (the list
// shifted while paging) is skipped. The first error is yielded once and ends
// the iteration, as does a page that brings nothing new while claiming a
// next page (a server ignoring the page parameter).
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
// items whose id was already yielded and stops with an error when a page
// claiming a next page brings nothing new.
func paginate[T any](ctx context.Context, start PageParams, what string,
	fetch func(context.Context, PageParams) (*Page[T], error), id func(T) string) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		var zero T
		p := start
		if p.PageSize == 0 {
			p.PageSize = DefaultIterPageSize
		}
		cursorMode := p.After != ""
		if !cursorMode && p.Page == 0 {
			p.Page = 1
		}
		seen := make(map[string]struct{})
		for {
			page, err := fetch(ctx, p)
			if err != nil {
				yield(zero, err)
				return
			}
			fresh := 0
			for _, it := range page.Data {
				k := id(it)
				if k != "" {
					if _, dup := seen[k]; dup {
						continue
					}
					seen[k] = struct{}{}
				}
				fresh++
				if !yield(it, nil) {
					return
				}
			}
			if !page.HasNextPage {
				return
			}
			if fresh == 0 {
				yield(zero, fmt.Errorf("workspace: listing %s: page %s brought no new items but has_next_page is true; stopping", what, pageLabel(p)))
				return
			}
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

func pageLabel(p PageParams) string {
	if p.After != "" {
		return fmt.Sprintf("after cursor %q", p.After)
	}
	return fmt.Sprint(p.Page)
}
