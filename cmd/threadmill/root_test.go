package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestUsageErrorsExitTwo checks that every kind of command-line mistake —
// an unknown command, a wrong number of arguments, an unknown flag — exits
// with exitUsage and names the command, whichever subcommand it hits.
func TestUsageErrorsExitTwo(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"bogus"}, `unknown command "bogus"`},
		{[]string{"schedule", "foo"}, `unknown command "foo"`},
		{[]string{"version", "extra"}, "version:"},
		{[]string{"run"}, "usage: threadmill run FILE"},
		{[]string{"status", "a", "b"}, "status:"},
		{[]string{"validate"}, "validate:"},
		{[]string{"enqueue"}, "enqueue:"},
		{[]string{"backfill"}, "backfill:"},
		{[]string{"plan", "--no-such-flag", "x.yaml"}, "unknown flag: --no-such-flag"},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, "_"), func(t *testing.T) {
			var out, errb bytes.Buffer
			code := execute(context.Background(), c.args, &out, &errb)
			if code != exitUsage {
				t.Errorf("exit code %d, want %d (stderr: %s)", code, exitUsage, errb.String())
			}
			if !strings.Contains(errb.String(), c.want) {
				t.Errorf("stderr %q does not contain %q", errb.String(), c.want)
			}
		})
	}
}
