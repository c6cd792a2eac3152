package workspace

import (
	"net/url"
	"strconv"
	"strings"
)

// values encodes the pagination parameters (workspace-api.md §3). Zero
// values are not sent.
func (p PageParams) values(v url.Values) url.Values {
	if v == nil {
		v = url.Values{}
	}
	setInt(v, "page", p.Page)
	setInt(v, "page_size", p.PageSize)
	setString(v, "page_order", p.PageOrder)
	setString(v, "after", p.After)
	setString(v, "before", p.Before)
	setInt(v, "first", p.First)
	setInt(v, "last", p.Last)
	setBool(v, "total_count", p.TotalCount)
	return v
}

// values encodes the thread list filters.
func (q ThreadQuery) values() url.Values {
	v := q.PageParams.values(nil)
	setList(v, "state", q.State)
	setList(v, "include", q.Include)
	return v
}

// values encodes every filter of workspace-api.md §8.3.
func (q ArtifactQuery) values() url.Values {
	v := q.PageParams.values(nil)
	setList(v, "state", q.State)
	setList(v, "ingest_status", q.IngestStatus)
	setList(v, "type", q.Type)
	setList(v, "sub_type", q.SubType)
	setList(v, "source", q.Source)
	setString(v, "parent_id", q.ParentID)
	setBool(v, "include_descendants", q.IncludeDescendants)
	setString(v, "filter_by_text", q.FilterByText)
	setBool(v, "keep_ancestors", q.KeepAncestors)
	setBool(v, "resolve_links", q.ResolveLinks)
	setBool(v, "filter_by_parent", q.FilterByParent)
	setString(v, "created_by", q.CreatedBy)
	setString(v, "order_by", q.OrderBy)
	setString(v, "order", q.Order)
	setList(v, "include", q.Include)
	return v
}

// values encodes the optional parameters of GET .../artifact/{id}.
func (q ArtifactGetQuery) values() url.Values {
	v := url.Values{}
	setBool(v, "include_content", q.IncludeContent)
	setBool(v, "include_references", q.IncludeReferences)
	setBool(v, "include_relationships", q.IncludeRelationships)
	setList(v, "include", q.Include)
	return v
}

func setInt(v url.Values, k string, n int) {
	if n != 0 {
		v.Set(k, strconv.Itoa(n))
	}
}

func setString(v url.Values, k, s string) {
	if s != "" {
		v.Set(k, s)
	}
}

func setBool(v url.Values, k string, b bool) {
	if b {
		v.Set(k, "true")
	}
}

// setList sends a list comma-separated, skipping empty items.
func setList(v url.Values, k string, items []string) {
	var keep []string
	for _, s := range items {
		if s = strings.TrimSpace(s); s != "" {
			keep = append(keep, s)
		}
	}
	if len(keep) > 0 {
		v.Set(k, strings.Join(keep, ","))
	}
}
