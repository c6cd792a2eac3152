package workspace

import (
	"encoding/json"
	"strconv"
	"strings"
)

// Source is one entry of a source block's sources[] (workspace-api.md §6),
// flattened: a retrieved chunk of an artifact (context.chunk) or a web page
// (context.website). Fields the answer did not carry are empty.
type Source struct {
	// Type is context.chunk or context.website (as sent; may be empty).
	Type string `json:"type,omitempty"`
	// ID is the source's id, which citations name as source_id.
	ID string `json:"id,omitempty"`
	// ArtifactID is the artifact the chunk comes from (document.artifact).
	ArtifactID string `json:"artifact_id,omitempty"`
	// Title is metadata.title (a chunk) or title (a web page).
	Title string `json:"title,omitempty"`
	// Page is metadata.page, 0 when absent.
	Page int64 `json:"page,omitempty"`
	// URL is a web page's address.
	URL string `json:"url,omitempty"`
	// Score is the retrieval score.
	Score float64 `json:"score,omitempty"`
}

// wireSource is a source as sent: the fields of both kinds.
type wireSource struct {
	Type     string          `json:"type"`
	Object   string          `json:"object"`
	ID       string          `json:"id"`
	Score    float64         `json:"score"`
	URL      string          `json:"url"`
	Title    string          `json:"title"`
	Document json.RawMessage `json:"document"`
	Metadata struct {
		Title string          `json:"title"`
		Page  json.RawMessage `json:"page"`
	} `json:"metadata"`
}

// ParseSources decodes a source block's sources[] tolerantly: entries that
// are not objects are skipped; document.artifact may be an id or an object
// with an id.
func ParseSources(raw json.RawMessage) []Source {
	var items []json.RawMessage
	if json.Unmarshal(raw, &items) != nil {
		return nil
	}
	var out []Source
	for _, item := range items {
		var w wireSource
		if json.Unmarshal(item, &w) != nil {
			continue
		}
		s := Source{Type: w.Type, ID: w.ID, URL: w.URL, Title: w.Title, Score: w.Score}
		if s.Type == "" {
			s.Type = w.Object
		}
		if w.Metadata.Title != "" {
			s.Title = w.Metadata.Title
		}
		s.Page = pageNumber(w.Metadata.Page)
		var doc struct {
			Artifact json.RawMessage `json:"artifact"`
		}
		if len(w.Document) > 0 && json.Unmarshal(w.Document, &doc) == nil && len(doc.Artifact) > 0 {
			var id string
			if json.Unmarshal(doc.Artifact, &id) != nil {
				var obj struct {
					ID string `json:"id"`
				}
				_ = json.Unmarshal(doc.Artifact, &obj)
				id = obj.ID
			}
			s.ArtifactID = id
		}
		out = append(out, s)
	}
	return out
}

// pageNumber reads a page given as a number or a numeric string.
func pageNumber(raw json.RawMessage) int64 {
	var c Count
	if len(raw) == 0 || c.UnmarshalJSON(raw) != nil {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			n, _ := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
			return max(n, 0)
		}
		return 0
	}
	return max(int64(c), 0)
}

// References returns the citations of the answer's text blocks and the
// sources of its source blocks, in order.
func References(blocks []ContentBlock) (citations []Citation, sources []Source) {
	for _, b := range blocks {
		switch b.Type {
		case "text":
			citations = append(citations, b.Citations...)
		case "source":
			sources = append(sources, ParseSources(b.Sources)...)
		}
	}
	return citations, sources
}
