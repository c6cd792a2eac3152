package simulator

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/threadmill/threadmill/workspace"
)

// MaxUploadBytes is the upload size above which POST …/artifact answers 413
// (workspace-api.md §8.5: about 250 MB).
const MaxUploadBytes = 250 << 20

// uploadProps is the props part of a Document upload.
type uploadProps struct {
	FileName      string `json:"file_name"`
	ContentType   string `json:"content_type"`
	ContentLength *int64 `json:"content_length"`
}

// handleCreateArtifact creates an artifact (workspace-api.md §8.1, §8.5): a
// Document as multipart/form-data with the parts type, name, props (JSON:
// file_name, content_type and content_length, which must equal the bytes
// of fileData) and fileData, optionally parent_id and
// keep_file_after_ingestion; a Folder or an InlineText as JSON. Anything
// else, an unknown part or field, a missing one or a parent that is not a
// Folder is a 400 naming it. The answer is the ArtifactDTO with 200. A
// Document is answered Processing, as the API does, and is Published with
// ingest Done at once afterwards: the simulator ingests instantly.
func (s *Server) handleCreateArtifact(w http.ResponseWriter, r *http.Request) *httpError {
	if e := s.checkProject(r); e != nil {
		return e
	}
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		return errorf(http.StatusBadRequest, "Content-Type %q: want multipart/form-data (a Document) or application/json", r.Header.Get("Content-Type"))
	}
	var spec ArtifactSpec
	var e *httpError
	switch mt {
	case "multipart/form-data":
		spec, e = readUpload(w, r, params["boundary"])
	case "application/json":
		spec, e = readCreateJSON(r)
	default:
		return errorf(http.StatusUnsupportedMediaType, "Content-Type %q: want multipart/form-data (a Document) or application/json", mt)
	}
	if e != nil {
		return e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if spec.ParentID != "" {
		p := s.store.artifacts[spec.ParentID]
		if p == nil || p.dto.State == "Deleted" {
			return errorf(http.StatusNotFound, "parent_id: artifact %q not found", spec.ParentID)
		}
		if p.dto.Type != workspace.ArtifactTypeFolder {
			return errorf(http.StatusBadRequest, "parent_id: artifact %q is a %s, not a Folder", spec.ParentID, p.dto.Type)
		}
	}
	a, err := s.addArtifactLocked(spec)
	if err != nil {
		return errorf(http.StatusBadRequest, "%v", err)
	}
	s.counters.ArtifactsCreated++
	out := a.view(false)
	if spec.Type == workspace.ArtifactTypeDocument {
		out.State, out.IngestStatus = workspace.ArtifactStateProcessing, "Processing"
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// readUpload reads a Document upload strictly.
func readUpload(w http.ResponseWriter, r *http.Request, boundary string) (ArtifactSpec, *httpError) {
	if boundary == "" {
		return ArtifactSpec{}, errorf(http.StatusBadRequest, "multipart/form-data without a boundary")
	}
	body := http.MaxBytesReader(w, r.Body, MaxUploadBytes+1<<20)
	mr := multipart.NewReader(body, boundary)
	fields := map[string]string{}
	var props *uploadProps
	var data []byte
	seenData := false
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return ArtifactSpec{}, errorf(http.StatusRequestEntityTooLarge, "upload larger than %d bytes", MaxUploadBytes)
			}
			return ArtifactSpec{}, errorf(http.StatusBadRequest, "multipart body: %v", err)
		}
		name := part.FormName()
		b, err := io.ReadAll(part)
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return ArtifactSpec{}, errorf(http.StatusRequestEntityTooLarge, "upload larger than %d bytes", MaxUploadBytes)
			}
			return ArtifactSpec{}, errorf(http.StatusBadRequest, "multipart part %q: %v", name, err)
		}
		if _, dup := fields[name]; dup || (name == "fileData" && seenData) {
			return ArtifactSpec{}, errorf(http.StatusBadRequest, "multipart part %q given twice", name)
		}
		switch name {
		case "type", "name", "parent_id", "keep_file_after_ingestion", "description":
			fields[name] = string(b)
		case "props", "config":
			if props != nil {
				return ArtifactSpec{}, errorf(http.StatusBadRequest, "multipart parts props and config given together (config is props' legacy name)")
			}
			if ct := part.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
				return ArtifactSpec{}, errorf(http.StatusBadRequest, "multipart part %q: content type %q, want application/json", name, ct)
			}
			dec := json.NewDecoder(bytes.NewReader(b))
			dec.DisallowUnknownFields()
			props = new(uploadProps)
			if err := dec.Decode(props); err != nil {
				return ArtifactSpec{}, errorf(http.StatusBadRequest, "multipart part %q: %v", name, err)
			}
			fields[name] = ""
		case "fileData":
			seenData, data = true, b
		default:
			return ArtifactSpec{}, errorf(http.StatusBadRequest, "unknown multipart part %q (want type, name, props, fileData, parent_id, keep_file_after_ingestion)", name)
		}
	}
	switch {
	case fields["type"] != workspace.ArtifactTypeDocument:
		return ArtifactSpec{}, errorf(http.StatusBadRequest, "part type: %q; a multipart upload creates a Document", fields["type"])
	case strings.TrimSpace(fields["name"]) == "":
		return ArtifactSpec{}, errorf(http.StatusBadRequest, "part name: required")
	case props == nil:
		return ArtifactSpec{}, errorf(http.StatusBadRequest, "part props: required (JSON with file_name, content_type, content_length)")
	case props.FileName == "" || props.ContentType == "":
		return ArtifactSpec{}, errorf(http.StatusBadRequest, "props: file_name and content_type are required")
	case props.ContentLength == nil:
		return ArtifactSpec{}, errorf(http.StatusBadRequest, "props: content_length is required")
	case !seenData:
		return ArtifactSpec{}, errorf(http.StatusBadRequest, "part fileData: required (the file's bytes)")
	case *props.ContentLength != int64(len(data)):
		return ArtifactSpec{}, errorf(http.StatusBadRequest, "props: content_length is %d but fileData has %d bytes", *props.ContentLength, len(data))
	case len(data) > MaxUploadBytes:
		return ArtifactSpec{}, errorf(http.StatusRequestEntityTooLarge, "upload of %d bytes is larger than %d", len(data), MaxUploadBytes)
	case !utf8.Valid(data):
		return ArtifactSpec{}, errorf(http.StatusBadRequest, "fileData: the simulator ingests UTF-8 text only")
	}
	if k := fields["keep_file_after_ingestion"]; k != "" && k != "true" && k != "false" {
		return ArtifactSpec{}, errorf(http.StatusBadRequest, "part keep_file_after_ingestion: %q, want true or false", k)
	}
	return ArtifactSpec{Name: fields["name"], ParentID: fields["parent_id"], Description: fields["description"],
		Type: workspace.ArtifactTypeDocument, Content: string(data), FileName: props.FileName, ContentType: props.ContentType}, nil
}

// createJSON is the JSON body that creates a Folder or an InlineText.
type createJSON struct {
	Type        string          `json:"type"`
	Source      string          `json:"source,omitempty"`
	Name        string          `json:"name"`
	ParentID    *string         `json:"parent_id"`
	Description string          `json:"description,omitempty"`
	Props       json.RawMessage `json:"props,omitempty"`
}

func readCreateJSON(r *http.Request) (ArtifactSpec, *httpError) {
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	var b createJSON
	if err := dec.Decode(&b); err != nil {
		return ArtifactSpec{}, errorf(http.StatusBadRequest, "body: %v", err)
	}
	if strings.TrimSpace(b.Name) == "" {
		return ArtifactSpec{}, errorf(http.StatusBadRequest, "name: required")
	}
	if b.Source != "" && b.Source != "User" {
		return ArtifactSpec{}, errorf(http.StatusBadRequest, "source: %q; the simulator creates User artifacts only", b.Source)
	}
	spec := ArtifactSpec{Name: b.Name, Description: b.Description, Type: b.Type}
	if b.ParentID != nil {
		spec.ParentID = *b.ParentID
	}
	switch b.Type {
	case workspace.ArtifactTypeFolder:
		spec.IngestStatus = workspace.IngestNotApplicable
	case "InlineText":
		var p struct {
			Content string `json:"content"`
		}
		if len(b.Props) == 0 || json.Unmarshal(b.Props, &p) != nil || p.Content == "" {
			return ArtifactSpec{}, errorf(http.StatusBadRequest, "props.content: required for an InlineText")
		}
		spec.Content, spec.IngestStatus = p.Content, workspace.IngestNotApplicable
	case workspace.ArtifactTypeDocument:
		return ArtifactSpec{}, errorf(http.StatusBadRequest, "type Document: upload it as multipart/form-data (type, name, props, fileData)")
	default:
		return ArtifactSpec{}, errorf(http.StatusBadRequest, "type %q: the simulator creates Folder and InlineText artifacts as JSON, Documents as multipart", b.Type)
	}
	return spec, nil
}

// updateJSON is the body of PUT …/artifact/{artifactId} (workspace-api.md
// §8.1): content is base64.
type updateJSON struct {
	Name             *string         `json:"name"`
	Description      *string         `json:"description"`
	ParentID         *string         `json:"parent_id"`
	ResetParentID    bool            `json:"reset_parent_id"`
	ExternalURL      *string         `json:"external_url"`
	Props            json.RawMessage `json:"props"`
	Content          *string         `json:"content"`
	PlainTextContent *string         `json:"plain_text_content"`
	PrivateProps     json.RawMessage `json:"private_props"`
	WSAutoSelect     *bool           `json:"ws_auto_select"`
}

// handleUpdateArtifact updates an artifact: name, description and content
// (base64 content, or plain_text_content) change; a new content also
// changes updated_at. Unknown fields are a 400.
func (s *Server) handleUpdateArtifact(w http.ResponseWriter, r *http.Request) *httpError {
	if e := s.checkProject(r); e != nil {
		return e
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxUploadBytes))
	dec.DisallowUnknownFields()
	var b updateJSON
	if err := dec.Decode(&b); err != nil {
		return errorf(http.StatusBadRequest, "body: %v", err)
	}
	var content *string
	switch {
	case b.Content != nil && b.PlainTextContent != nil:
		return errorf(http.StatusBadRequest, "content and plain_text_content given together")
	case b.Content != nil:
		raw, err := base64.StdEncoding.DecodeString(*b.Content)
		if err != nil {
			return errorf(http.StatusBadRequest, "content: not base64: %v", err)
		}
		if !utf8.Valid(raw) {
			return errorf(http.StatusBadRequest, "content: the simulator keeps UTF-8 text only")
		}
		c := string(raw)
		content = &c
	case b.PlainTextContent != nil:
		content = b.PlainTextContent
	}
	if b.Name != nil && strings.TrimSpace(*b.Name) == "" {
		return errorf(http.StatusBadRequest, "name: must not be empty")
	}
	if b.ParentID != nil || b.ResetParentID {
		return errorf(http.StatusBadRequest, "parent_id: moving artifacts is not simulated")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a, e := s.artifactLocked(r)
	if e != nil {
		return e
	}
	if b.Name != nil {
		a.dto.Name = *b.Name
	}
	if b.Description != nil {
		a.dto.Description = *b.Description
	}
	if content != nil {
		s.setContentLocked(a, *content)
	}
	s.store.version++
	writeJSON(w, http.StatusOK, a.view(false))
	return nil
}

// UpdateArtifactContent replaces an artifact's content and sets its
// updated_at to Config.Now(), as an edit in the Workspace does.
func (s *Server) UpdateArtifactContent(id, content string) (workspace.Artifact, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.store.artifacts[id]
	if a == nil {
		return workspace.Artifact{}, fmt.Errorf("simulator: artifact %q not found", id)
	}
	s.setContentLocked(a, content)
	s.store.version++
	return a.view(true), nil
}

// setContentLocked replaces a's content (and content_length), forgets its
// analysis and sets updated_at to now.
func (s *Server) setContentLocked(a *artifact, content string) {
	a.dto.Content = content
	a.dto.HasContent = content != ""
	s.store.analyses.forget(a)
	a.updated = s.now()
	if a.dto.Type == workspace.ArtifactTypeDocument && len(a.dto.Props) > 0 {
		var p map[string]any
		if json.Unmarshal(a.dto.Props, &p) == nil {
			p["content_length"] = len(content)
			a.dto.Props, _ = json.Marshal(p)
		}
	}
}
