package workspace

import "fmt"

// BodyLimits cap the decoded size of a 2xx answer, per kind of call, so that
// a hostile or broken server (a 200 MB body, a gzip bomb) can make the
// client hold no more than the answer it expects could need. Zero fields take
// the defaults of DefaultBodyLimits. Error answers are read up to 64 KiB
// whatever the kind, and kept truncated. Streams have their own Limits.
type BodyLimits struct {
	// Small caps answers that carry one small object: /app/me, a thread
	// (create, get, update), chat/validate and an interaction's cancel
	// (default 64 KiB; such an answer is a few hundred bytes).
	Small int64
	// Interaction caps one interaction (create, get, delete) and a one-shot
	// chat answer (default 8 MiB). An interaction echoes its request, whose
	// prompt may be a reduce step's long input, beside the answer and its
	// sources: a model's whole context is well under 8 MiB of JSON.
	Interaction int64
	// Page caps one page of a list of artifacts, threads or interactions
	// (default 8 MiB: 100 interactions of 80 KiB each, or thousands of
	// artifacts).
	Page int64
	// Artifact caps one artifact from GetArtifact, which carries the
	// document's text when asked for its content (default 32 MiB,
	// DefaultMaxBodyBytes).
	Artifact int64
}

// DefaultBodyLimits returns the default body limits: 64 KiB for small
// answers, 8 MiB for an interaction or chat answer, 8 MiB for a page, 32 MiB
// for an artifact.
func DefaultBodyLimits() BodyLimits {
	return BodyLimits{Small: 64 << 10, Interaction: 8 << 20, Page: 8 << 20, Artifact: DefaultMaxBodyBytes}
}

func (l BodyLimits) withDefaults() BodyLimits {
	d := DefaultBodyLimits()
	for _, f := range []struct{ dst, src *int64 }{
		{&d.Small, &l.Small}, {&d.Interaction, &l.Interaction}, {&d.Page, &l.Page}, {&d.Artifact, &l.Artifact},
	} {
		if *f.src > 0 {
			*f.dst = *f.src
		}
	}
	return d
}

func (l BodyLimits) validate() error {
	for _, f := range []struct {
		name string
		n    int64
	}{{"Small", l.Small}, {"Interaction", l.Interaction}, {"Page", l.Page}, {"Artifact", l.Artifact}} {
		if f.n < 0 {
			return fmt.Errorf("%s %d is negative", f.name, f.n)
		}
	}
	return nil
}

// bodyKind is the kind of answer a call expects, which picks its limit.
type bodyKind int

const (
	kindSmall bodyKind = iota // the zero value: the tightest limit
	kindInteraction
	kindPage
	kindArtifact
)

// bodyLimit is the limit of a kind of answer, under the WithMaxBodyBytes
// ceiling when one is set.
func (c *Client) bodyLimit(k bodyKind) int64 {
	var n int64
	switch k {
	case kindInteraction:
		n = c.bodyLimits.Interaction
	case kindPage:
		n = c.bodyLimits.Page
	case kindArtifact:
		n = c.bodyLimits.Artifact
	default:
		n = c.bodyLimits.Small
	}
	if c.maxBody > 0 {
		n = min(n, c.maxBody)
	}
	return n
}
