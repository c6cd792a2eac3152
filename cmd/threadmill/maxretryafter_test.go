package main

import (
	"testing"
	"time"
)

func TestMaxRetryAfterFlagThenEnv(t *testing.T) {
	env := func(v string) func(string) (string, bool) {
		return func(k string) (string, bool) {
			if k == envMaxRetryAfter && v != "" {
				return v, true
			}
			return "", false
		}
	}
	for _, tc := range []struct {
		flag    time.Duration
		env     string
		want    time.Duration
		wantErr bool
	}{
		{0, "", 0, false}, // the worker's default
		{0, "90s", 90 * time.Second, false},
		{5 * time.Minute, "90s", 5 * time.Minute, false}, // the flag wins
		{0, "soon", 0, true},
		{0, "10ms", 0, true},
		{500 * time.Millisecond, "", 0, true},
	} {
		got, err := maxRetryAfter(tc.flag, env(tc.env))
		if got != tc.want || (err != nil) != tc.wantErr {
			t.Errorf("flag %v, env %q: %v, %v; want %v, error %v", tc.flag, tc.env, got, err, tc.want, tc.wantErr)
		}
	}
}
