package simulator

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"mime"
	"path"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/threadmill/threadmill/workspace"
)

// store is the in-memory state of the project. Every access holds Server.mu.
type store struct {
	projectID string
	seq       uint64 // shared sequence for generated ids

	artifacts     map[string]*artifact
	artifactOrder []*artifact // creation order
	byPath        map[string]*artifact
	// version changes whenever an artifact is added or changes state: it
	// invalidates listCache.
	version uint64
	// listCache is the artifacts matching the filters of the last listing,
	// so that paging through it costs a page, not a pass over the corpus.
	listCache struct {
		key     string
		version uint64
		list    []*artifact
	}

	threads     map[string]*thread
	threadOrder []*thread

	interactions     map[string]*interaction
	interactionOrder []*interaction
	chats            []ChatRecord

	// analyses caches the responder's analysis of recently read
	// artifacts.
	analyses analyses
}

type artifact struct {
	dto     workspace.Artifact
	path    string // slash path from the project root, e.g. "Support/Tickets/x.md"
	updated time.Time
	created time.Time
	order   int
}

// analysesBudget bounds the estimated bytes of the artifact analyses kept:
// the analysis of a document takes about five times its size, and a run
// over a large corpus reads most documents once.
const analysesBudget = 8 << 20

// analyses caches artifacts' content as responder sentences, the most
// recently used first, within analysesBudget: two generations of half the
// budget each; a full young generation becomes the old one, and the old
// one is dropped. A hit in the old generation moves to the young one.
type analyses struct {
	young, old map[*artifact][]sentence
	youngBytes int
	budget     int // 0: analysesBudget
}

// of returns a's content as responder sentences. Call with Server.mu held.
func (c *analyses) of(a *artifact) []sentence {
	if sents, ok := c.young[a]; ok {
		return sents
	}
	sents, ok := c.old[a]
	if !ok {
		sents = analyze(a.dto.Content)
		if sents == nil {
			sents = []sentence{}
		}
	}
	size := analysisSize(sents)
	if c.young == nil || (c.youngBytes+size > cmp.Or(c.budget, analysesBudget)/2 && len(c.young) > 0) {
		c.old, c.young, c.youngBytes = c.young, map[*artifact][]sentence{}, 0
	}
	c.young[a] = sents
	c.youngBytes += size
	return sents
}

// forget drops a's analysis, when its content changes.
func (c *analyses) forget(a *artifact) {
	if sents, ok := c.young[a]; ok {
		c.youngBytes -= analysisSize(sents)
		delete(c.young, a)
	}
	delete(c.old, a)
}

// analysisSize estimates the bytes an analysis holds: each sentence, its
// text (and the lower-cased copy its stems cut from) and its stems.
func analysisSize(sents []sentence) int {
	n := 64 // the map entry
	for _, s := range sents {
		n += 40 + 2*len(s.text) + 16*len(s.stems)
	}
	return n
}

type thread struct {
	dto          workspace.Thread
	interactions []*interaction
}

func newStore(projectID string) store {
	return store{
		projectID:    projectID,
		artifacts:    map[string]*artifact{},
		byPath:       map[string]*artifact{},
		threads:      map[string]*thread{},
		interactions: map[string]*interaction{},
	}
}

// nextID returns a new opaque id with the given prefix. Ids are a function
// of the sequence number only, so a replayed request sequence yields the
// same ids.
func (st *store) nextID(prefix string) string {
	st.seq++
	x := st.seq*0x9e3779b97f4a7c15 + 0x6a09e667f3bcc908
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return fmt.Sprintf("%s_%016x", prefix, x)
}

// ArtifactSpec describes an artifact added with AddArtifact. Zero fields take
// the documented defaults.
type ArtifactSpec struct {
	// ID is the artifact id. Default: "artifact_" + 16 hex digits of the
	// SHA-256 of the artifact's path (parent names and Name), so the same
	// tree always gets the same ids.
	ID string
	// Name is the artifact name (required).
	Name string
	// ParentID is the id of the parent Folder. Empty: the project root.
	ParentID string
	// Content is the document text. It is what the responder reads.
	Content string
	// Description is free text; filter_by_text searches it with the name.
	Description string
	// Type defaults to Document.
	Type string
	// State defaults to Published.
	State string
	// IngestStatus defaults to NotApplicable for folders and Done otherwise.
	IngestStatus string
	// CreatedAt defaults to UpdatedAt.
	CreatedAt time.Time
	// UpdatedAt defaults to Config.Now() at the time of the call.
	UpdatedAt time.Time
	// FileName and ContentType are a Document's props.file_name and
	// props.content_type. Defaults: Name, and the type of its extension.
	FileName, ContentType string
}

// AddArtifact adds one artifact to the project and returns it as the API
// shows it. It panics when ParentID names no Folder artifact or when the id
// is already taken: both are mistakes in the calling test.
func (s *Server) AddArtifact(spec ArtifactSpec) workspace.Artifact {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, err := s.addArtifactLocked(spec)
	if err != nil {
		panic("simulator.AddArtifact: " + err.Error())
	}
	return a.view(true)
}

func (s *Server) addArtifactLocked(spec ArtifactSpec) (*artifact, error) {
	st := &s.store
	if spec.Name == "" {
		return nil, errors.New("artifact name is empty")
	}
	if spec.Type == "" {
		spec.Type = workspace.ArtifactTypeDocument
	}
	if spec.State == "" {
		spec.State = workspace.ArtifactStatePublished
	}
	if spec.IngestStatus == "" {
		spec.IngestStatus = workspace.IngestDone
		if spec.Type == workspace.ArtifactTypeFolder {
			spec.IngestStatus = workspace.IngestNotApplicable
		}
	}
	if spec.UpdatedAt.IsZero() {
		spec.UpdatedAt = s.now()
	}
	if spec.CreatedAt.IsZero() {
		spec.CreatedAt = spec.UpdatedAt
	}
	p := spec.Name
	var parent *artifact
	if spec.ParentID != "" {
		parent = st.artifacts[spec.ParentID]
		if parent == nil {
			return nil, fmt.Errorf("parent %q of %q does not exist", spec.ParentID, spec.Name)
		}
		if parent.dto.Type != workspace.ArtifactTypeFolder {
			return nil, fmt.Errorf("parent %q of %q is a %s, not a Folder", spec.ParentID, spec.Name, parent.dto.Type)
		}
		p = parent.path + "/" + spec.Name
	}
	id := spec.ID
	if id == "" {
		id = pathID(p)
		for n := 2; st.artifacts[id] != nil; n++ {
			id = pathID(fmt.Sprintf("%s#%d", p, n))
		}
	} else if st.artifacts[id] != nil {
		return nil, fmt.Errorf("artifact id %q is already taken", id)
	}
	a := &artifact{
		path:    p,
		created: spec.CreatedAt,
		updated: spec.UpdatedAt,
		order:   len(st.artifactOrder),
		dto: workspace.Artifact{
			ID:           id,
			ProjectID:    st.projectID,
			Name:         spec.Name,
			Type:         spec.Type,
			Source:       "User",
			State:        spec.State,
			IngestStatus: spec.IngestStatus,
			Description:  spec.Description,
			HasContent:   spec.Content != "",
			Content:      spec.Content,
		},
	}
	if parent != nil {
		pid := parent.dto.ID
		a.dto.ParentID = &pid
		parent.dto.ChildCount++
	}
	if spec.Type == workspace.ArtifactTypeDocument {
		ct := cmp.Or(spec.ContentType, mime.TypeByExtension(path.Ext(spec.Name)))
		if ct == "" {
			ct = "text/plain; charset=utf-8"
		}
		props, _ := json.Marshal(map[string]any{
			"file_name":      cmp.Or(spec.FileName, spec.Name),
			"content_type":   ct,
			"content_length": len(spec.Content),
		})
		a.dto.Props = props
	}
	st.artifacts[id] = a
	st.artifactOrder = append(st.artifactOrder, a)
	st.version++
	if _, dup := st.byPath[p]; !dup {
		st.byPath[p] = a
	}
	return a, nil
}

func pathID(p string) string {
	sum := sha256.Sum256([]byte(p))
	return "artifact_" + hex.EncodeToString(sum[:8])
}

// view returns the DTO; content is included only when asked.
func (a *artifact) view(withContent bool) workspace.Artifact {
	d := a.dto
	d.CreatedAt = a.created.UTC().Format(time.RFC3339Nano)
	d.UpdatedAt = a.updated.UTC().Format(time.RFC3339Nano)
	if !withContent {
		d.Content = ""
	}
	return d
}

// usable reports whether the artifact can serve as context (the rule of
// workspace-api.md §8.2).
func (a *artifact) usable() bool { return a.dto.Usable() }

// textExtensions are the file extensions AddDir seeds as documents.
var textExtensions = map[string]bool{".md": true, ".markdown": true, ".txt": true, ".text": true}

// AddDir seeds the project from the tree at root in fsys: each directory
// becomes a Folder artifact (its children point to it with parent_id), each
// .md, .markdown, .txt or .text file a Document artifact named after the
// file (extension included) whose content is the file's text. Files and
// directories whose names start with "." or "_" are skipped, as are files
// with other extensions; a symlink to a file is followed, a symlink to a
// directory is not. root itself is not an artifact: its entries land at
// the project root. Artifacts are Published with ingest status Done (folders:
// NotApplicable).
//
// created_at and updated_at are one Config.Now() reading taken at the start
// of the call: file
// modification times are ignored, because neither embed.FS nor a fresh git
// checkout preserves them. Use SetUpdatedAt to age an artifact. Artifact ids
// are derived from the path below root (see ArtifactSpec.ID).
//
// A file that is not valid UTF-8 is an error naming it; artifacts added
// before the error stay.
func (s *Server) AddDir(fsys fs.FS, root string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	folders := map[string]string{".": ""} // dir path -> folder artifact id
	now := s.now()
	err := fs.WalkDir(fsys, root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("simulator: seed from %s: %w", p, err)
		}
		rel := strings.TrimPrefix(strings.TrimPrefix(p, root), "/")
		if p == root || rel == "" {
			if !d.IsDir() {
				return fmt.Errorf("simulator: seed root %s is not a directory", p)
			}
			folders[p] = ""
			return nil
		}
		name := d.Name()
		if strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		parentID := folders[path.Dir(p)]
		if d.IsDir() {
			a, err := s.addArtifactLocked(ArtifactSpec{Name: name, ParentID: parentID, Type: workspace.ArtifactTypeFolder, UpdatedAt: now})
			if err != nil {
				return fmt.Errorf("simulator: seed folder %s: %w", p, err)
			}
			folders[p] = a.dto.ID
			return nil
		}
		regular := d.Type().IsRegular()
		if d.Type()&fs.ModeSymlink != 0 { // a symlinked file counts; a symlinked directory does not (no cycles)
			if fi, err := fs.Stat(fsys, p); err == nil {
				regular = fi.Mode().IsRegular()
			}
		}
		if !regular || !textExtensions[strings.ToLower(path.Ext(name))] {
			s.log.Debug("simulator: skipping non-text file", "path", p)
			return nil
		}
		data, err := fs.ReadFile(fsys, p)
		if err != nil {
			return fmt.Errorf("simulator: seed from %s: %w", p, err)
		}
		if !utf8.Valid(data) {
			return fmt.Errorf("simulator: seed from %s: file is not UTF-8 text", p)
		}
		if _, err := s.addArtifactLocked(ArtifactSpec{Name: name, ParentID: parentID, Content: string(data), UpdatedAt: now}); err != nil {
			return fmt.Errorf("simulator: seed document %s: %w", p, err)
		}
		return nil
	})
	return err
}

// SetUpdatedAt sets the updated_at of an artifact, for tests of "updated
// within the run window" selections.
func (s *Server) SetUpdatedAt(id string, t time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.store.artifacts[id]
	if a == nil {
		return fmt.Errorf("simulator: artifact %q not found", id)
	}
	a.updated = t
	return nil
}

// SetArtifactState changes an artifact's state and ingest status (empty
// values are left unchanged), e.g. to make it Processing or Error.
func (s *Server) SetArtifactState(id, state, ingestStatus string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.store.artifacts[id]
	if a == nil {
		return fmt.Errorf("simulator: artifact %q not found", id)
	}
	if state != "" {
		a.dto.State = state
	}
	if ingestStatus != "" {
		a.dto.IngestStatus = ingestStatus
	}
	s.store.version++
	return nil
}

// Artifact returns the artifact with the given id, content included.
func (s *Server) Artifact(id string) (workspace.Artifact, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.store.artifacts[id]
	if a == nil {
		return workspace.Artifact{}, false
	}
	return a.view(true), true
}

// ArtifactByPath returns the artifact at a slash path below the seeded root,
// e.g. "Support/Tickets/TCK-1041-login-loop.md", content included.
func (s *Server) ArtifactByPath(p string) (workspace.Artifact, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.store.byPath[strings.Trim(p, "/")]
	if a == nil {
		return workspace.Artifact{}, false
	}
	return a.view(true), true
}

// Artifacts returns every artifact in creation order, without content.
func (s *Server) Artifacts() []workspace.Artifact {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]workspace.Artifact, 0, len(s.store.artifactOrder))
	for _, a := range s.store.artifactOrder {
		out = append(out, a.view(false))
	}
	return out
}

// descendants returns the artifacts below a (depth first, creation order).
func (st *store) descendants(parentID string) []*artifact {
	var out []*artifact
	for _, a := range st.artifactOrder {
		if st.isBelow(a, parentID) {
			out = append(out, a)
		}
	}
	return out
}

// isBelow reports whether a is a strict descendant of the artifact parentID.
func (st *store) isBelow(a *artifact, parentID string) bool {
	for p := a.dto.ParentID; p != nil; {
		if *p == parentID {
			return true
		}
		pa := st.artifacts[*p]
		if pa == nil {
			return false
		}
		p = pa.dto.ParentID
	}
	return false
}
