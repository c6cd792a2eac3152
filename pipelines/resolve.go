package pipelines

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"iter"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/threadmill/threadmill/workspace"
)

// ArtifactLister lists a project's artifacts, following pages.
// *workspace.Client implements it.
type ArtifactLister interface {
	Artifacts(ctx context.Context, projectID string, q workspace.ArtifactQuery) iter.Seq2[workspace.Artifact, error]
}

// listPageSize is the page size Resolve asks for.
const listPageSize = 100

// Resolve turns the artifact sets the steps use (for_each and artifacts) into
// artifacts, through l's listing of the pipeline's project, and returns
// them in memory; see ResolveTo, which it calls. Sets no step uses are not
// resolved.
//
// Each set maps to its artifacts sorted by folder path, name, then id; only
// usable artifacts are kept (Published with ingest status Done or
// NotApplicable; folders are walked, never returned). A folder named in ids
// stands for its usable descendants.
//
// A bare `all: true` set (no name, type or updated filter) that no for_each
// walks maps to nil without listing anything: Plan sends it as
// all_artifacts: true and lets the server include every artifact. Plan
// decides this from the set's definition (ArtifactSet.UsesAllArtifacts),
// never from the nil value.
//
// An empty set is an error unless the set says allow_empty: true; then it
// maps to an empty, non-nil slice. Every set's problems are reported, joined.
func Resolve(ctx context.Context, l ArtifactLister, p *Pipeline, run RunInfo) (map[string][]ArtifactRef, error) {
	var m MemorySets
	if err := ResolveTo(ctx, l, p, run, &m); err != nil {
		return nil, err
	}
	return m.Sets(), nil
}

// ResolveTo resolves the sets the steps use as Resolve does, writing each
// set's artifacts to w as the listing's pages come, a set at a time: what
// it holds does not grow with a folder's size (w sorts). When it fails, w
// holds part of the sets, to be thrown away.
func ResolveTo(ctx context.Context, l ArtifactLister, p *Pipeline, run RunInfo, w SetWriter) error {
	if p.Workspace.Project == "" {
		return errors.New("resolve artifacts: no project: set workspace.project in the pipeline or WORKSPACE_PROJECT in the environment")
	}
	r := &resolver{ctx: ctx, l: l, project: p.Workspace.Project, run: run}
	walked := map[string]bool{}
	var used []string
	for _, s := range p.Steps {
		if s.ForEach != "" {
			walked[s.ForEach] = true
			used = append(used, s.ForEach)
		}
		used = append(used, s.Artifacts...)
	}
	slices.Sort(used)
	used = slices.Compact(used)

	var problems []error
	for _, name := range used {
		set, ok := p.Artifacts[name]
		if !ok {
			problems = append(problems, fmt.Errorf("artifact set %q is not defined", name))
			continue
		}
		if set.UsesAllArtifacts() && !walked[name] {
			if err := w.AllArtifacts(ctx, name); err != nil {
				return fmt.Errorf("resolve artifact set %q: %w", name, err)
			}
			continue
		}
		if len(problems) > 0 {
			// The sets will be thrown away: the rest are resolved only to
			// report their problems too, and w is left as it is (with the
			// failed set begun and not ended).
			w = &countSets{}
		}
		err := r.resolve(set, func(a ArtifactRef) error {
			if err := w.Add(ctx, name, a); err != nil {
				return &writeError{err}
			}
			return nil
		})
		n := 0
		if err == nil {
			if n, err = w.End(ctx, name); err != nil {
				err = &writeError{err}
			}
		}
		var werr *writeError
		if errors.As(err, &werr) {
			return fmt.Errorf("resolve artifact set %q: %w", name, werr.err)
		}
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("resolve artifact set %q: %w", name, err)
			}
			problems = append(problems, fmt.Errorf("artifact set %q: %w", name, err))
			continue
		}
		if n == 0 && !set.AllowEmpty {
			problems = append(problems, fmt.Errorf("artifact set %q is empty in project %s (%s); add allow_empty: true if that is expected", name, r.project, set.Describe()))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("resolve artifacts: %w", errors.Join(problems...))
	}
	return nil
}

// countSets is a SetWriter that keeps nothing but how many artifacts each
// set was given.
type countSets struct{ n int }

func (c *countSets) Add(context.Context, string, ArtifactRef) error { c.n++; return nil }

func (c *countSets) End(context.Context, string) (int, error) {
	n := c.n
	c.n = 0
	return n, nil
}

func (c *countSets) AllArtifacts(context.Context, string) error { return nil }

// writeError is a SetWriter's failure: it ends ResolveTo at once, as it
// is not a problem of the set's definition.
type writeError struct{ err error }

func (e *writeError) Error() string { return e.err.Error() }

// resolver caches the listings one Resolve needs.
type resolver struct {
	ctx     context.Context
	l       ArtifactLister
	project string
	run     RunInfo

	folders     map[string]workspace.Artifact // folder id -> folder
	folderPaths map[string]string             // folder id -> "A/B"
}

func (r *resolver) list(q workspace.ArtifactQuery) ([]workspace.Artifact, error) {
	var out []workspace.Artifact
	err := r.each(q, func(a workspace.Artifact) error { out = append(out, a); return nil })
	return out, err
}

// each calls fn with every artifact the query lists, as the pages come:
// nothing of an artifact is kept that fn does not keep. It stops at fn's
// first error.
func (r *resolver) each(q workspace.ArtifactQuery, fn func(workspace.Artifact) error) error {
	q.PageSize = listPageSize
	for a, err := range r.l.Artifacts(r.ctx, r.project, q) {
		if err != nil {
			return err
		}
		if err := fn(a); err != nil {
			return err
		}
	}
	return r.ctx.Err()
}

// loadFolders lists every folder of the project once and computes paths.
func (r *resolver) loadFolders() error {
	if r.folders != nil {
		return nil
	}
	fs, err := r.list(workspace.ArtifactQuery{
		Type: []string{workspace.ArtifactTypeFolder}, IncludeDescendants: true,
		State: []string{workspace.ArtifactStatePublished, workspace.ArtifactStateReady},
	})
	if err != nil {
		return fmt.Errorf("list folders of project %s: %w", r.project, err)
	}
	r.folders = make(map[string]workspace.Artifact, len(fs))
	for _, f := range fs {
		if f.Type == workspace.ArtifactTypeFolder {
			r.folders[f.ID] = f
		}
	}
	r.folderPaths = make(map[string]string, len(r.folders))
	for id := range r.folders {
		r.folderPaths[id] = r.pathOf(id)
	}
	return nil
}

// pathOf computes a folder's path of names, guarding against parent cycles.
func (r *resolver) pathOf(id string) string {
	var names []string
	seen := map[string]bool{}
	for id != "" && !seen[id] {
		seen[id] = true
		f, ok := r.folders[id]
		if !ok {
			break
		}
		names = append(names, f.Name)
		if f.ParentID == nil {
			break
		}
		id = *f.ParentID
	}
	slices.Reverse(names)
	return strings.Join(names, "/")
}

// allQuery lists the whole project.
var allQuery = workspace.ArtifactQuery{
	IncludeDescendants: true,
	State:              []string{workspace.ArtifactStatePublished, workspace.ArtifactStateReady},
}

// findFolder finds a folder by id or by a path of names.
func (r *resolver) findFolder(ref string) (string, error) {
	if _, ok := r.folders[ref]; ok {
		return ref, nil
	}
	want := strings.Trim(strings.TrimSpace(ref), "/")
	parts := strings.Split(want, "/")
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
	}
	want = strings.Join(parts, "/")
	var matches []string
	for id, p := range r.folderPaths {
		if p == want {
			matches = append(matches, id)
		}
	}
	slices.Sort(matches)
	switch len(matches) {
	case 1:
		return matches[0], nil
	case 0:
		paths := make([]string, 0, len(r.folderPaths))
		for _, p := range r.folderPaths {
			paths = append(paths, p)
		}
		slices.Sort(paths)
		msg := fmt.Sprintf("folder %q not found in project %s", ref, r.project)
		if s := suggest(want, paths); s != "" {
			msg += fmt.Sprintf("; did you mean %q?", s)
		} else if len(paths) > 0 && len(paths) <= 20 {
			msg += fmt.Sprintf(" (folders: %s)", strings.Join(paths, ", "))
		}
		return "", errors.New(msg)
	default:
		return "", fmt.Errorf("folder path %q is ambiguous in project %s: folders %s share it; use one's id", ref, r.project, strings.Join(matches, ", "))
	}
}

// resolve lists set s and calls emit with each of its artifacts, in
// listing order.
func (r *resolver) resolve(s ArtifactSet, emit func(ArtifactRef) error) error {
	if err := r.loadFolders(); err != nil {
		return err
	}
	if len(s.IDs) > 0 {
		return r.byIDs(s.IDs, emit)
	}
	var upd *updatedFilter
	if s.Updated != "" {
		u, err := parseUpdated(s.Updated)
		if err != nil {
			return err
		}
		if u.window && (r.run.WindowStart.IsZero() || r.run.WindowEnd.IsZero()) {
			return fmt.Errorf("updated: %s needs a run window, and run %q has none (only a scheduled run has one; without a schedule, use a duration such as 168h)", UpdatedWithinRunWindow, r.run.ID)
		}
		upd = &u
	}
	keep := func(a workspace.Artifact) error {
		if !a.Usable() {
			return nil
		}
		if s.Name != "" {
			if ok, _ := path.Match(s.Name, a.Name); !ok {
				return nil
			}
		}
		if s.Type != "" && a.Type != s.Type {
			return nil
		}
		ref := r.ref(a)
		if upd != nil && !r.updatedOK(*upd, ref.UpdatedAt) {
			return nil
		}
		return emit(ref)
	}
	switch {
	case s.Folder != "":
		// A folder's artifacts are filtered as the pages come: a folder of
		// 100,000 documents is never held as listed.
		id, err := r.findFolder(s.Folder)
		if err != nil {
			return err
		}
		err = r.each(workspace.ArtifactQuery{
			ParentID: id, IncludeDescendants: true,
			State: []string{workspace.ArtifactStatePublished, workspace.ArtifactStateReady},
		}, keep)
		if err != nil {
			return fmt.Errorf("list folder %q (%s): %w", s.Folder, id, err)
		}
	default:
		// The project is filtered as the pages come, as a folder is: a
		// project of a million artifacts is never held as listed (each
		// such set lists it again).
		if err := r.each(allQuery, keep); err != nil {
			return fmt.Errorf("list artifacts of project %s: %w", r.project, err)
		}
	}
	return nil
}

func (r *resolver) updatedOK(u updatedFilter, t time.Time) bool {
	if t.IsZero() {
		return false
	}
	switch {
	case u.window:
		return !t.Before(r.run.WindowStart) && t.Before(r.run.WindowEnd)
	case u.within > 0:
		return !t.Before(r.run.Time.Add(-u.within)) && !t.After(r.run.Time)
	default:
		return !t.Before(u.since)
	}
}

// byIDs resolves explicit ids against the project's listing, calling
// emit with each artifact (a folder's usable descendants for a folder) as
// the pages come; it holds the ids, not the listing.
func (r *resolver) byIDs(ids []string, emit func(ArtifactRef) error) error {
	wanted := make(map[string]bool, len(ids))
	var folders []string
	for _, id := range ids {
		wanted[id] = false
		if _, ok := r.folders[id]; ok {
			folders = append(folders, id)
		}
	}
	var problems []error
	err := r.each(allQuery, func(a workspace.Artifact) error {
		if seen, ok := wanted[a.ID]; ok && !seen {
			wanted[a.ID] = true
			switch {
			case a.Type == workspace.ArtifactTypeFolder:
			case !a.Usable():
				problems = append(problems, fmt.Errorf("artifact %s (%q) is not ready: state %s, ingest status %s", a.ID, a.Name, a.State, a.IngestStatus))
				return nil
			default:
				return emit(r.ref(a))
			}
		}
		if a.Usable() {
			for _, f := range folders {
				if r.under(a, f) {
					return emit(r.ref(a))
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("list artifacts of project %s: %w", r.project, err)
	}
	for _, id := range ids {
		if !wanted[id] {
			problems = append(problems, fmt.Errorf("artifact %s not found in project %s (or not Published)", id, r.project))
			wanted[id] = true // named twice: reported once
		}
	}
	return errors.Join(problems...)
}

// under reports whether a lies somewhere below folder id.
func (r *resolver) under(a workspace.Artifact, id string) bool {
	seen := map[string]bool{}
	p := a.ParentID
	for p != nil && !seen[*p] {
		if *p == id {
			return true
		}
		seen[*p] = true
		f, ok := r.folders[*p]
		if !ok {
			return false
		}
		p = f.ParentID
	}
	return false
}

func (r *resolver) ref(a workspace.Artifact) ArtifactRef {
	ref := ArtifactRef{ID: a.ID, Name: a.Name, Type: a.Type}
	if a.ParentID != nil {
		ref.Folder = r.folderPaths[*a.ParentID]
	}
	ref.UpdatedAt = parseTime(cmp.Or(a.UpdatedAt, a.CreatedAt))
	ref.Size, _ = a.Size()
	ref.State = a.State + "/" + a.IngestStatus
	return ref
}

// parseTime reads an API timestamp (RFC 3339, with or without a zone).
func parseTime(s string) time.Time {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05.999999999Z07:00"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC()
		}
	}
	return time.Time{}
}
