package secret_test

import (
	"strings"
	"testing"

	"github.com/threadmill/threadmill/internal/secret"
)

func TestShortSecretLeavesWordsAlone(t *testing.T) {
	r := secret.New("x")
	for _, s := range []string{
		"Retry exhausted",
		"x",
		"max_tokens=4 x=1",
		"https://example.com/x/y?page=x",
		"Bearer xyz",
		"Bearerx",
		"https://host/path@x",
	} {
		if got := r.Redact(s); got != s {
			t.Errorf("Redact(%q) = %q, want it unchanged", s, got)
		}
	}
}

func TestShortSecretMaskedInHeadersAndURLs(t *testing.T) {
	r := secret.New("x")
	for in, want := range map[string]string{
		"Authorization: Bearer x":                   "Authorization: Bearer [REDACTED]",
		"map[Authorization:[Bearer x] X-Org:[x1]]":  "map[Authorization:[Bearer [REDACTED]] X-Org:[x1]]",
		"authorization: x":                          "authorization: [REDACTED]",
		"Authorization=x, next":                     "Authorization=[REDACTED], next",
		"BEARER   x":                                "BEARER   [REDACTED]",
		"https://u:x@host/?token=x":                 "https://u:[REDACTED]@host/?token=[REDACTED]",
		"https://x@host/":                           "https://[REDACTED]@host/",
		"GET /a?page=2&access_token=x&b=x":          "GET /a?page=2&access_token=[REDACTED]&b=x",
		`"url":"http://h/?api_key=x"`:               `"url":"http://h/?api_key=[REDACTED]"`,
		"http://h/?API-KEY=x#frag":                  "http://h/?API-KEY=[REDACTED]#frag",
		"http://h/?sig=x;password=x token=x":        "http://h/?sig=[REDACTED];password=[REDACTED] token=x",
		"redis://:x@127.0.0.1:6379/0 then Retry ex": "redis://:[REDACTED]@127.0.0.1:6379/0 then Retry ex",
	} {
		if got := r.Redact(in); got != want {
			t.Errorf("Redact(%q)\n got %q\nwant %q", in, got, want)
		}
	}
}

func TestShortSecretQueryEscaped(t *testing.T) {
	r := secret.New("a b/") // escapes to a+b%2F in a query
	if got, want := r.Redact("GET /x?token=a+b%2F"), "GET /x?token=[REDACTED]"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestLongSecretMaskedEverywhere(t *testing.T) {
	tok := "zt_9fK2mQ7xLp3V"
	r := secret.New("x", tok, "")
	in := "Retry exhausted for " + tok + "; prefix" + tok + "suffix; Bearer x; Bearer " + tok
	want := "Retry exhausted for [REDACTED]; prefix[REDACTED]suffix; Bearer [REDACTED]; Bearer [REDACTED]"
	if got := r.Redact(in); got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	if got := string(r.RedactBytes([]byte(tok))); got != secret.Mask {
		t.Errorf("RedactBytes = %q", got)
	}
}

func TestMinLenBoundary(t *testing.T) {
	long := strings.Repeat("k", secret.MinLen)
	short := long[1:]
	if got := secret.New(long).Redact("a" + long + "b"); got != "a[REDACTED]b" {
		t.Errorf("a %d-byte secret was not masked inside a word: %q", len(long), got)
	}
	if got := secret.New(short).Redact("a" + short + "b"); got != "a"+short+"b" {
		t.Errorf("a %d-byte secret was masked inside a word: %q", len(short), got)
	}
}

func TestNilRedactor(t *testing.T) {
	var r *secret.Redactor
	if r != secret.New("", "") {
		t.Error("New with only empty secrets is not nil")
	}
	if got := r.Redact("Bearer x"); got != "Bearer x" {
		t.Errorf("nil Redact = %q", got)
	}
	b := []byte("abc")
	if got := r.RedactBytes(b); &got[0] != &b[0] {
		t.Error("nil RedactBytes copied its input")
	}
}

// FuzzRedact checks the two promises on arbitrary text: a long secret never
// survives, and a short one never survives right after "Bearer ".
func FuzzRedact(f *testing.F) {
	f.Add("token abc123XYZ here", "abc123XYZ")
	f.Add("Bearer x", "x")
	f.Add("abcabcabcabcabc", "bcabcabca")
	f.Fuzz(func(t *testing.T, text, sec string) {
		if sec == "" || strings.ContainsAny(sec, secret.Mask+" \t") {
			t.Skip() // the marker itself could rebuild a secret made of its letters
		}
		r := secret.New(sec)
		if len(sec) >= secret.MinLen {
			if got := r.Redact(text); strings.Contains(got, sec) {
				t.Fatalf("Redact(%q) = %q keeps the secret", text, got)
			}
			return
		}
		got := r.Redact(text + " Bearer " + sec)
		if strings.HasSuffix(got, "Bearer "+sec) {
			t.Fatalf("Redact(%q) = %q keeps the bearer token", text+" Bearer "+sec, got)
		}
	})
}
