package workspace

import (
	"errors"
	"net/http"
	"time"
)

// IsDefiniteRejection reports whether err proves that the server received
// a request and acted on none of it: an answer of 400, 401, 403, 404, 409,
// 413, 422 or 429. Any other failure of a request that creates something (a
// 5xx, which a proxy may send after the server created it, a 408, a timeout,
// a reset, a cut or undecodable body) is ambiguous: the thing may exist, and
// must be looked up before it is created again.
func IsDefiniteRejection(err error) bool {
	ae, ok := errors.AsType[*APIError](err)
	if !ok {
		return false
	}
	switch ae.StatusCode {
	case http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound,
		http.StatusConflict, http.StatusRequestEntityTooLarge, http.StatusUnprocessableEntity,
		http.StatusTooManyRequests:
		return true
	}
	return false
}

// ParseRetryAfter reads the Retry-After header of an answer, in delay
// seconds or as an HTTP date relative to now, and reports whether the
// header was there and readable. Negative delays are zero; delays are capped
// at 24 hours (callers apply their own, smaller caps).
func ParseRetryAfter(h http.Header, now time.Time) (time.Duration, bool) {
	v := h.Get("Retry-After")
	if v == "" {
		return 0, false
	}
	return parseRetryAfter(v, now)
}
