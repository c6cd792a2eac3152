// Package secret masks known secrets (API tokens, passwords) in text. It is
// the one rule that logs (internal/logging) and error messages (workspace)
// apply, so both mask the same things.
//
// A secret of at least MinLen bytes is masked wherever it appears. A shorter
// one (a test token such as "x") would mangle ordinary words ("Retry
// e[REDACTED]hausted"), so it is masked only where it is known to be a
// credential, whatever its length:
//
//   - after "Bearer " (an Authorization header, in any case), and as the
//     whole value after "Authorization:" or "Authorization=";
//   - as the user or the password of a URL ("https://u:x@host");
//   - as the value of a credential query parameter ("?token=x",
//     "&access_token=x", "api_key=x"...: any parameter whose name contains
//     token, key, secret, pass, pwd, auth, credential or sig).
package secret

import (
	"cmp"
	"net/url"
	"slices"
	"strings"
)

// Mask replaces a secret.
const Mask = "[REDACTED]"

// MinLen is the length, in bytes, from which a secret is masked wherever it
// appears. Real API tokens are far longer; shorter values are masked only in
// Authorization headers and URLs (see the package comment).
const MinLen = 8

// Redactor masks a fixed set of secrets. The zero value and nil mask
// nothing. It is safe for concurrent use.
type Redactor struct {
	long     *strings.Replacer // masks the long secrets; nil when there are none
	longs    []string          // longest first
	shorts   []string          // longest first, with their query-escaped forms
	hasShort bool
}

// New returns a Redactor of secrets, ignoring empty ones; it returns nil when
// none is left.
func New(secrets ...string) *Redactor {
	var longs, shorts []string
	for _, s := range secrets {
		switch {
		case s == "":
		case len(s) >= MinLen:
			longs = append(longs, s)
		default:
			shorts = append(shorts, s)
			if q := url.QueryEscape(s); q != s {
				shorts = append(shorts, q)
			}
		}
	}
	if len(longs) == 0 && len(shorts) == 0 {
		return nil
	}
	// Longest first, so a secret that contains another is masked whole.
	byLen := func(a, b string) int { return cmp.Compare(len(b), len(a)) }
	slices.SortStableFunc(longs, byLen)
	slices.SortStableFunc(shorts, byLen)
	r := &Redactor{longs: slices.Compact(longs), shorts: slices.Compact(shorts), hasShort: len(shorts) > 0}
	if len(r.longs) > 0 {
		pairs := make([]string, 0, 2*len(r.longs))
		for _, s := range r.longs {
			pairs = append(pairs, s, Mask)
		}
		r.long = strings.NewReplacer(pairs...)
	}
	return r
}

// Redact returns s with the secrets masked; s itself when there is nothing
// to mask.
func (r *Redactor) Redact(s string) string {
	if r == nil {
		return s
	}
	for _, sec := range r.longs {
		if strings.Contains(s, sec) {
			s = r.long.Replace(s)
			break
		}
	}
	for _, sec := range r.shorts {
		s = redactInContext(s, sec)
	}
	return s
}

// RedactBytes is Redact for a byte slice; it returns b itself when there is
// nothing to mask.
func (r *Redactor) RedactBytes(b []byte) []byte {
	if r == nil {
		return b
	}
	s := string(b)
	if red := r.Redact(s); red != s {
		return []byte(red)
	}
	return b
}

// redactInContext masks the occurrences of sec that sit where a credential
// goes: after "Bearer ", as a URL's user or password, or as the value of a
// credential query parameter.
func redactInContext(s, sec string) string {
	var b strings.Builder
	from, done := 0, 0 // where to search next; how much of s is in b
	for {
		i := strings.Index(s[from:], sec)
		if i < 0 {
			break
		}
		i += from
		j := i + len(sec)
		if credentialAt(s, i, j) {
			b.WriteString(s[done:i])
			b.WriteString(Mask)
			done = j
			from = j
		} else {
			from = i + 1
		}
		if from >= len(s) {
			break
		}
	}
	if done == 0 {
		return s
	}
	b.WriteString(s[done:])
	return b.String()
}

// credentialAt reports whether s[i:j] is a whole credential: a bearer token,
// a URL's user or password, or a credential query value.
func credentialAt(s string, i, j int) bool {
	after := byte(0)
	if j < len(s) {
		after = s[j]
	}
	// A URL's user or password: "//x@" or ":x@" inside a scheme://authority.
	if after == '@' && i > 0 && (s[i-1] == ':' || s[i-1] == '/') {
		word := s[wordStart(s, i):i]
		if k := strings.Index(word, "://"); k >= 0 && !strings.Contains(word[k+3:], "/") {
			return true
		}
	}
	if isTokenChar(after) {
		return false // the secret is only the start of a longer value
	}
	// A query value: [?&;]name=x with a credential-looking name.
	if i > 0 && s[i-1] == '=' {
		k := i - 1
		for k > 0 && isNameChar(s[k-1]) {
			k--
		}
		if k > 0 && k < i-1 && strings.ContainsRune("?&;", rune(s[k-1])) && credentialName(s[k:i-1]) {
			return true
		}
	}
	// An Authorization header: "Bearer x", "Authorization: x".
	head := strings.TrimRight(s[:i], " \t")
	spaced := len(head) < i
	head = strings.ToLower(head[max(0, len(head)-len("authorization:")-1):])
	for _, p := range []string{"bearer", "authorization:", "authorization="} {
		if !strings.HasSuffix(head, p) || p == "bearer" && !spaced {
			continue
		}
		if k := len(head) - len(p); k == 0 || !isNameChar(head[k-1]) {
			return true
		}
	}
	return false
}

// wordStart returns where the whitespace- or quote-delimited word that holds
// s[i] begins.
func wordStart(s string, i int) int {
	for i > 0 && !strings.ContainsRune(" \t\r\n\"'<>()[]{},", rune(s[i-1])) {
		i--
	}
	return i
}

// credentialWords are the parts of a query parameter's name that make its
// value a credential.
var credentialWords = []string{"token", "key", "secret", "pass", "pwd", "auth", "credential", "sig"}

func credentialName(name string) bool {
	name = strings.ToLower(name)
	for _, w := range credentialWords {
		if strings.Contains(name, w) {
			return true
		}
	}
	return false
}

// isTokenChar reports whether c may continue a token (token68 of RFC 7235,
// plus the unreserved characters of a URL).
func isTokenChar(c byte) bool {
	return isNameChar(c) || strings.IndexByte("~+/=%", c) >= 0
}

func isNameChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.'
}
