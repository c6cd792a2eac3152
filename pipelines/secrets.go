package pipelines

import (
	"math"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"
)

// secretScanner refuses anything in a pipeline file that looks like a
// credential. It looks at values as written, before interpolation:
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

// scanValue reports a scalar whose text looks like a credential.
func (s *secretScanner) scanValue(n *yaml.Node, path string) {
	if s.reported[n] {
		return
	}
	if looksLikeSecret(n.Value) {
		s.reported[n] = true
		s.errs.add(nodePos(n), "%s: this looks like an API token: %s", fieldName(path), secretAdvice)
	}
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
