package workspace

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"mime/multipart"
	"net/textproto"
)

// Document is a file to upload as a Document artifact.
type Document struct {
	// Name is the artifact's name. Required.
	Name string
	// ParentID is the folder it goes in; empty: the project's top level.
	ParentID string
	// FileName and ContentType go in props; defaults Name and
	// "text/markdown; charset=utf-8".
	FileName, ContentType string
	// Data is the file's bytes.
	Data []byte
}

// UploadDocument creates a Document artifact from d
// (POST /app/project/{projectId}/artifact, multipart/form-data with the
// parts type, name, props and fileData, and parent_id when set;
// workspace-api.md §8.5). props carries file_name, content_type and
// content_length, the number of bytes of fileData. The artifact is
// ingested asynchronously: the answer is usually Processing.
func (c *Client) UploadDocument(ctx context.Context, projectID string, d Document) (*Artifact, error) {
	p, err := seg("project id", projectID)
	if err != nil {
		return nil, fmt.Errorf("workspace: upload document: %w", err)
	}
	if d.Name == "" {
		return nil, fmt.Errorf("workspace: upload document: empty name")
	}
	fileName := d.FileName
	if fileName == "" {
		fileName = d.Name
	}
	ct := d.ContentType
	if ct == "" {
		ct = "text/markdown; charset=utf-8"
	}
	props, err := json.Marshal(map[string]any{"file_name": fileName, "content_type": ct, "content_length": len(d.Data)})
	if err != nil {
		return nil, fmt.Errorf("workspace: upload document: %w", err)
	}
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	_ = mw.WriteField("type", ArtifactTypeDocument)
	_ = mw.WriteField("name", d.Name)
	if d.ParentID != "" {
		_ = mw.WriteField("parent_id", d.ParentID)
	}
	ph := textproto.MIMEHeader{}
	ph.Set("Content-Disposition", `form-data; name="props"`)
	ph.Set("Content-Type", "application/json")
	pw, _ := mw.CreatePart(ph)
	_, _ = pw.Write(props)
	fw, err := mw.CreateFormFile("fileData", fileName)
	if err != nil {
		return nil, fmt.Errorf("workspace: upload document: %w", err)
	}
	_, _ = fw.Write(d.Data)
	if err := mw.Close(); err != nil {
		return nil, fmt.Errorf("workspace: upload document: %w", err)
	}
	var a Artifact
	if err := c.do(ctx, call{method: "POST", path: "/app/project/" + p + "/artifact", raw: body.Bytes(),
		rawType: mw.FormDataContentType(), out: &a, kind: kindArtifact}); err != nil {
		return nil, err
	}
	return &a, nil
}

// CreateFolder creates a Folder artifact named name in the folder parentID
// (the project's top level when empty): POST /app/project/{projectId}/artifact
// with a JSON body.
func (c *Client) CreateFolder(ctx context.Context, projectID, name, parentID string) (*Artifact, error) {
	p, err := seg("project id", projectID)
	if err != nil {
		return nil, fmt.Errorf("workspace: create folder: %w", err)
	}
	body := map[string]any{"type": ArtifactTypeFolder, "source": "User", "name": name, "parent_id": nil, "props": map[string]any{}}
	if parentID != "" {
		body["parent_id"] = parentID
	}
	var a Artifact
	if err := c.do(ctx, call{method: "POST", path: "/app/project/" + p + "/artifact", body: body, out: &a, kind: kindArtifact}); err != nil {
		return nil, err
	}
	return &a, nil
}

// ReplaceArtifactContent replaces an artifact's content with data
// (PUT /app/project/{projectId}/artifact/{artifactId}, content as base64);
// the artifact keeps its id and is ingested again.
func (c *Client) ReplaceArtifactContent(ctx context.Context, projectID, artifactID string, data []byte) (*Artifact, error) {
	p, err := seg("project id", projectID)
	if err != nil {
		return nil, fmt.Errorf("workspace: replace artifact content: %w", err)
	}
	id, err := seg("artifact id", artifactID)
	if err != nil {
		return nil, fmt.Errorf("workspace: replace artifact content: %w", err)
	}
	var a Artifact
	body := map[string]string{"content": base64.StdEncoding.EncodeToString(data)}
	if err := c.do(ctx, call{method: "PUT", path: "/app/project/" + p + "/artifact/" + id, body: body, out: &a, kind: kindArtifact}); err != nil {
		return nil, err
	}
	return &a, nil
}
