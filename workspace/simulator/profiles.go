package simulator

import (
	"maps"
	"net/http"
	"slices"
)

// Profile is a named set of Compat switches standing for a generation of
// Workspace servers (`--compat profile=NAME`).
type Profile struct {
	// Compat is what the profile serves.
	Compat Compat
	// StandsFor names the server versions the profile plays.
	StandsFor string
}

// Profiles are the server profiles of ParseCompat's profile key, with
// their aliases. Only the routes are documented per spec version (§11);
// for the open questions of §12 "oldest" takes the answer of the old
// spec's wording where it has one (cancel ends in Error with stop_reason
// cancelled; the chat example without usage; props with only what the spec
// requires, so no content_length) and the least convenient answer
// elsewhere, and "newest" the answers the current guide and spec
// suggest.
var Profiles = map[string]Profile{
	"oldest":  oldest,
	"2025-11": oldest,
	"newest":  newest,
	"2025-12": newest,
}

var (
	oldest = Profile{
		Compat: Compat{
			Routes: RoutesProject, Create: CreateBlocking, FinishedStream: FinishedStream409,
			CancelEnd: CancelEndError, ChatUsage: ChatUsageWithout, Validate400: Validate400DetailList,
			ArtifactSize: ArtifactSizeWithout, MaxPageSize: 50, Pagination: PaginationCursor,
		},
		StandsFor: "servers of spec versions up to 2025-11-25 (project-scoped routes)",
	}
	newest = Profile{
		Compat: Compat{
			Routes: RoutesCurrent, Create: CreateAsync, FinishedStream: FinishedStreamReplay,
			CancelEnd: CancelEndCompleted, ChatUsage: ChatUsageWith, Validate400: Validate400Valid,
			ArtifactSize: ArtifactSizeWith, Pagination: PaginationPage,
		},
		StandsFor: "servers of spec 2025-12 and later (current routes)",
	}
)

// profileNames lists the names of Profiles, sorted.
func profileNames() []string { return slices.Sorted(maps.Keys(Profiles)) }

// validate400 writes the 400 of /app/chat/validate in the shape of
// Compat.Validate400: msg is the summary, errs every problem.
func (c Compat) validate400(w http.ResponseWriter, msg string, errs []string) {
	switch c.Validate400 {
	case Validate400DetailList:
		detail := make([]map[string]any, 0, len(errs))
		for _, e := range errs {
			detail = append(detail, map[string]any{"type": "value_error", "loc": []string{"body"}, "msg": e, "input": nil})
		}
		writeJSON(w, http.StatusBadRequest, map[string]any{"detail": detail})
	case Validate400DetailString:
		writeJSON(w, http.StatusBadRequest, map[string]string{"detail": msg})
	case Validate400Message:
		writeJSON(w, http.StatusBadRequest, map[string]string{"message": msg})
	case Validate400Error:
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": map[string]string{"type": "invalid_request_error", "message": msg}})
	case Validate400Text:
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(msg + "\n"))
	default:
		f := false
		writeJSON(w, http.StatusBadRequest, apiError{Valid: &f, Message: msg, Errors: slices.Clone(errs)})
	}
}
