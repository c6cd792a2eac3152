package pipelines

import (
	"strings"
)

// interpolator expands ${VAR} references in scalar values from the
// environment.
//
// Syntax, in any scalar value (never in keys):
//
//	${NAME}            the value of NAME; an error if NAME is not set
//	${NAME:-fallback}  the value of NAME, or fallback when NAME is unset or empty
//	$${                a literal "${"
//
// NAME is a letter or underscore followed by letters, digits or underscores.
// Variables whose names mark them as secrets (TOKEN, SECRET, PASSWORD,
// API_KEY, ...) are refused: a pipeline never carries a credential, and the
// text of a prompt is sent to the server and written to result files.
type interpolator struct {
	lookup func(string) (string, bool)
	errs   *errs
}

// expand returns s with its ${VAR} references replaced. It reports each
// problem and returns ok=false if there was any.
func (in *interpolator) expand(s, path string, p pos) (string, bool) {
	if !strings.Contains(s, "$") {
		return s, true
	}
	var b strings.Builder
	ok := true
	for {
		i := strings.IndexByte(s, '$')
		if i < 0 {
			b.WriteString(s)
			break
		}
		b.WriteString(s[:i])
		s = s[i:]
		switch {
		case strings.HasPrefix(s, "$${"):
			b.WriteString("${")
			s = s[3:]
			continue
		case !strings.HasPrefix(s, "${"):
			b.WriteByte('$')
			s = s[1:]
			continue
		}
		end := strings.IndexByte(s, '}')
		if end < 0 {
			in.errs.add(p, "%s: unterminated ${ in %q (write $${ for a literal ${)", fieldName(path), s)
			return "", false
		}
		expr := s[2:end]
		s = s[end+1:]
		name, fallback, hasFallback := strings.Cut(expr, ":-")
		if !validEnvName(name) {
			in.errs.add(p, "%s: ${%s} is not a valid variable reference (use ${NAME} or ${NAME:-default}; write $${ for a literal ${)", fieldName(path), expr)
			ok = false
			continue
		}
		if secretEnvName(name) {
			in.errs.add(p, "%s: refusing to interpolate ${%s}: secrets must not be placed in a pipeline (threadmill reads WORKSPACE_API_TOKEN from the environment itself)", fieldName(path), name)
			ok = false
			continue
		}
		val, set := "", false
		if in.lookup != nil {
			val, set = in.lookup(name)
		}
		switch {
		case hasFallback && val == "":
			val = fallback
		case !set:
			in.errs.add(p, "%s: environment variable %s is not set (set it, or write ${%s:-default})", fieldName(path), name, name)
			ok = false
			continue
		}
		b.WriteString(val)
	}
	return b.String(), ok
}

func validEnvName(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		switch {
		case r == '_', r >= 'A' && r <= 'Z', r >= 'a' && r <= 'z':
		case r >= '0' && r <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// secretEnvName reports whether a variable's name says it holds a credential.
func secretEnvName(name string) bool {
	u := strings.ToUpper(name)
	for _, w := range []string{"TOKEN", "SECRET", "PASSWORD", "PASSWD", "API_KEY", "APIKEY", "CREDENTIAL", "PRIVATE_KEY"} {
		if strings.Contains(u, w) {
			return true
		}
	}
	return false
}
