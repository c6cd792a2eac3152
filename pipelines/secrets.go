package pipelines

import (
	"math"
	"regexp"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// secretScanner refuses anything in a pipeline file that looks like a
// credential. It looks at values, keys and comments as written, before
// interpolation:
//
//   - a key named like a credential (token, api_key, secret, password,
//     authorization, ...) with a literal value;
//   - "Bearer <something>";
//   - well-known token shapes (sk-..., ghp_..., xoxb-..., AKIA..., JWTs);
//   - long high-entropy words: 32 or more characters from [A-Za-z0-9_+=-]
//     mixing upper case, lower case and digits, with at least 4 bits of
//     entropy per character. Artifact ids and hex hashes do not qualify.
type secretScanner struct {
	errs     *errs
	reported map[*yaml.Node]bool
}

const secretAdvice = "credentials do not belong in a pipeline file; threadmill reads the API token from WORKSPACE_API_TOKEN in the environment"

var secretKeys = map[string]bool{
	"token": true, "apitoken": true, "accesstoken": true, "authtoken": true, "bearer": true,
	"apikey": true, "secret": true, "clientsecret": true, "password": true,
	"passwd": true, "authorization": true, "auth": true, "credentials": true, "credential": true,
	"privatekey": true, "workspaceapitoken": true,
}

func secretKeyName(k string) bool {
	norm := strings.NewReplacer("_", "", "-", "", " ", "").Replace(strings.ToLower(k))
	return secretKeys[norm]
}

// scanKey reports a credential-named key holding a literal value. It returns
// true when the key is credential-named at all, so an unknown-key message is
// replaced by this one.
//
// In a map (vars), a credential-named key whose value is built from ${VAR}
// is left to the interpolator; for the format's own keys it is reported.
func (s *secretScanner) scanKey(k, v *yaml.Node, path string, inMap bool) bool {
	if !secretKeyName(k.Value) {
		return false
	}
	// A value built from ${VAR} is left to the interpolator, which refuses
	// secret-named variables.
	if v.Kind == yaml.ScalarNode && v.Tag != "!!null" && strings.TrimSpace(v.Value) != "" && !strings.Contains(v.Value, "${") {
		s.errs.add(nodePos(v), "%s: this looks like a credential: %s", path, secretAdvice)
		s.reported[v] = true
		return true
	}
	if inMap {
		return false
	}
	s.errs.add(nodePos(k), "%s: %s", path, secretAdvice)
	return true
}

var (
	bearerRe     = regexp.MustCompile(`(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{8,}`)
	knownTokenRe = regexp.MustCompile(`\b(sk-[A-Za-z0-9_-]{16,}|sk_(live|test)_[A-Za-z0-9]{16,}|gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|xox[abpr]-[A-Za-z0-9-]{10,}|AKIA[0-9A-Z]{16}|eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,})`)
	wordRe       = regexp.MustCompile(`[A-Za-z0-9_+=-]{32,}`)
)

// scanValue reports a scalar whose text looks like a credential, and
// reports whether it did (or had already), so that no other message of
// the file repeats the value.
func (s *secretScanner) scanValue(n *yaml.Node, path string) bool {
	if s.reported[n] {
		return true
	}
	if looksLikeSecret(n.Value) {
		s.reported[n] = true
		s.errs.add(nodePos(n), "%s: this looks like an API token: %s", fieldName(path), secretAdvice)
		return true
	}
	return false
}

// scanMapKey reports a mapping key that looks like a credential; the
// message names the mapping, never the key.
func (s *secretScanner) scanMapKey(k *yaml.Node, path string) bool {
	if !looksLikeSecret(k.Value) {
		return false
	}
	s.errs.add(nodePos(k), "%s: a key looks like an API token: %s", fieldName(path), secretAdvice)
	return true
}

// scanComments reports the comments of the document that look like
// credentials: a token pasted in a comment is as exposed as one in a value.
// Each is reported once, at its place in src (the file's lines).
func (s *secretScanner) scanComments(doc *yaml.Node, src []string) {
	seen := map[pos]bool{}
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		for _, c := range []string{n.HeadComment, n.LineComment, n.FootComment} {
			for _, l := range strings.Split(c, "\n") {
				l = strings.TrimSpace(l)
				if l == "" || !looksLikeSecret(l) {
					continue
				}
				p := locateComment(src, l)
				if !seen[p] {
					seen[p] = true
					s.errs.add(p, "a comment looks like it holds an API token: %s", secretAdvice)
				}
			}
		}
		for _, c := range n.Content { // an alias's target is walked where it is defined
			walk(c)
		}
	}
	walk(doc)
}

// locateComment finds the comment text c (starting with #) in src.
func locateComment(src []string, c string) pos {
	for i, line := range src {
		for from := 0; ; {
			j := strings.Index(line[from:], c)
			if j < 0 {
				break
			}
			j += from
			if j == 0 || line[j-1] == ' ' || line[j-1] == '\t' {
				return pos{i + 1, utf8.RuneCountInString(line[:j]) + 1}
			}
			from = j + 1
		}
	}
	return pos{}
}

// looksLikeSecret applies the value rules of secretScanner to a text.
func looksLikeSecret(v string) bool {
	if bearerRe.MatchString(v) || knownTokenRe.MatchString(v) {
		return true
	}
	for _, w := range wordRe.FindAllString(v, -1) {
		if highEntropy(w) {
			return true
		}
	}
	return false
}

func highEntropy(w string) bool {
	var upper, lower, digit bool
	counts := map[rune]int{}
	for _, r := range w {
		switch {
		case r >= 'A' && r <= 'Z':
			upper = true
		case r >= 'a' && r <= 'z':
			lower = true
		case r >= '0' && r <= '9':
			digit = true
		}
		counts[r]++
	}
	if !upper || !lower || !digit {
		return false
	}
	var h float64
	n := float64(len(w))
	for _, c := range counts {
		p := float64(c) / n
		h -= p * math.Log2(p)
	}
	return h >= 4.0
}
