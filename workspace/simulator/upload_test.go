package simulator_test

import (
	"bytes"
	"encoding/base64"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/threadmill/threadmill/workspace"
	"github.com/threadmill/threadmill/workspace/simulator"
)

// part is one multipart part of an upload.
type part struct {
	name, contentType, body string
}

// multipartBody encodes parts and returns the body and its Content-Type.
func multipartBody(t testing.TB, parts ...part) ([]byte, string) {
	t.Helper()
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	for _, p := range parts {
		h := textproto.MIMEHeader{}
		h.Set("Content-Disposition", `form-data; name="`+p.name+`"`)
		if p.contentType != "" {
			h.Set("Content-Type", p.contentType)
		}
		w, err := mw.CreatePart(h)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = w.Write([]byte(p.body))
	}
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes(), mw.FormDataContentType()
}

func (e *env) upload(parts ...part) (int, []byte) {
	e.t.Helper()
	body, ct := multipartBody(e.t, parts...)
	req := e.request("POST", "/api/v1/app/project/"+project+"/artifact", body)
	req.Header.Set("Content-Type", ct)
	status, _, data := e.send(req)
	return status, data
}

const artifactsPath = "/api/v1/app/project/" + project + "/artifact"

func TestUploadDocumentIsStrict(t *testing.T) {
	e := newEnv(t, simulator.Config{})
	good := []part{
		{"type", "", "Document"},
		{"name", "", "brief.md"},
		{"props", "application/json", `{"file_name":"brief.md","content_type":"text/markdown","content_length":5}`},
		{"fileData", "application/octet-stream", "hello"},
	}
	with := func(i int, p part) []part {
		out := append([]part(nil), good...)
		out[i] = p
		return out
	}
	for name, tc := range map[string]struct {
		parts []part
		want  string
	}{
		"wrong content_length":  {with(2, part{"props", "application/json", `{"file_name":"b","content_type":"text/plain","content_length":4}`}), "content_length is 4 but fileData has 5 bytes"},
		"no content_length":     {with(2, part{"props", "application/json", `{"file_name":"b","content_type":"text/plain"}`}), "content_length is required"},
		"unknown props field":   {with(2, part{"props", "application/json", `{"file_name":"b","content_type":"t","content_length":5,"x":1}`}), `unknown field "x"`},
		"props not JSON type":   {with(2, part{"props", "text/plain", `{}`}), "want application/json"},
		"not a Document":        {with(0, part{"type", "", "Folder"}), "a multipart upload creates a Document"},
		"empty name":            {with(1, part{"name", "", " "}), "part name: required"},
		"unknown part":          {append(good, part{"colour", "", "red"}), `unknown multipart part "colour"`},
		"no fileData":           {good[:3], "part fileData: required"},
		"parent not a folder":   {append(good, part{"parent_id", "", e.artifactID("Policies/refund-policy.md")}), "is a Document, not a Folder"},
		"parent does not exist": {append(good, part{"parent_id", "", "artifact_nope"}), "not found"},
	} {
		status, body := e.upload(tc.parts...)
		if status/100 != 4 || !strings.Contains(errText(body), tc.want) {
			t.Errorf("%s: %d %s, want a 4xx saying %q", name, status, body, tc.want)
		}
	}
	if c := e.sim.Counters(); c.ArtifactsCreated != 0 {
		t.Fatalf("refused uploads created %d artifacts", c.ArtifactsCreated)
	}

	folder := e.artifactID("Policies")
	status, body := e.upload(append(good, part{"parent_id", "", folder})...)
	if status != http.StatusOK || !strings.Contains(string(body), `"state":"Processing"`) {
		t.Fatalf("upload: %d %s", status, body)
	}
	a, ok := e.sim.ArtifactByPath("Policies/brief.md")
	if !ok || a.Content != "hello" || !a.Usable() || a.Type != workspace.ArtifactTypeDocument {
		t.Fatalf("uploaded artifact: %+v (found %v)", a, ok)
	}
	if c := e.sim.Counters(); c.ArtifactsCreated != 1 {
		t.Errorf("%d artifacts created, want 1", c.ArtifactsCreated)
	}

	// JSON creates folders, not documents.
	var f workspace.Artifact
	e.must("POST", artifactsPath, map[string]any{"type": "Folder", "name": "Reports", "parent_id": nil, "props": map[string]any{}}, http.StatusOK, &f)
	if f.Type != workspace.ArtifactTypeFolder || f.ParentID != nil {
		t.Errorf("folder: %+v", f)
	}
	if status, body := e.do("POST", artifactsPath, map[string]any{"type": "Document", "name": "x"}); status != http.StatusBadRequest || !strings.Contains(errText(body), "multipart") {
		t.Errorf("a JSON Document: %d %s", status, body)
	}

	// PUT replaces the content and moves updated_at.
	before := a.UpdatedAt
	if err := e.sim.SetUpdatedAt(a.ID, fixedNow.Add(-24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	var u workspace.Artifact
	e.must("PUT", artifactsPath+"/"+a.ID, map[string]any{"content": base64.StdEncoding.EncodeToString([]byte("bye"))}, http.StatusOK, &u)
	if got, _ := e.sim.Artifact(a.ID); got.Content != "bye" || u.UpdatedAt != before {
		t.Errorf("after PUT: content %q, updated_at %s (want %s)", got.Content, u.UpdatedAt, before)
	}
	if status, body := e.do("PUT", artifactsPath+"/"+a.ID, map[string]any{"contents": "x"}); status != http.StatusBadRequest || !strings.Contains(errText(body), "unknown field") {
		t.Errorf("PUT with an unknown field: %d %s", status, body)
	}
}

// FuzzUploadAnswers4xxOrCreates: whatever the body, the upload route
// answers 200 (and then the artifact exists with the bytes sent) or a 4xx,
// never a 5xx or a panic.
func FuzzUploadAnswers4xxOrCreates(f *testing.F) {
	body, ct := multipartBody(f, part{"type", "", "Document"}, part{"name", "", "a.md"},
		part{"props", "application/json", `{"file_name":"a.md","content_type":"text/markdown","content_length":2}`},
		part{"fileData", "", "hi"})
	f.Add(body, ct)
	f.Add([]byte("--x\r\nContent-Disposition: form-data; name=\"type\"\r\n\r\nDocument\r\n--x--\r\n"), "multipart/form-data; boundary=x")
	f.Add([]byte(`{"type":"Folder","name":"F"}`), "application/json")
	sim := simulator.New(simulator.Config{})
	defer sim.Close()
	f.Fuzz(func(t *testing.T, body []byte, contentType string) {
		req := httptest.NewRequest("POST", "/api/v1/app/project/"+simulator.DefaultProjectID+"/artifact", bytes.NewReader(body))
		req.Header.Set("Content-Type", contentType)
		req.Header.Set("x-org", "default")
		rec := httptest.NewRecorder()
		sim.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK && rec.Code/100 != 4 {
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	})
}
