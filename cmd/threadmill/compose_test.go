package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/threadmill/threadmill/deploy"
)

// TestComposeCommandsParse checks that every threadmill service of
// docker-compose.yml runs a real subcommand with flags it accepts (after
// compose's variable defaults are applied), so a renamed flag cannot break
// `docker compose up` unnoticed.
func TestComposeCommandsParse(t *testing.T) {
	c, _, err := deploy.LoadCompose("../../docker-compose.yml", nil)
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for name, s := range c.Services {
		if !strings.HasPrefix(s.Image, "threadmill:") && len(s.Entrypoint) == 0 {
			continue
		}
		args := s.Command
		if len(s.Entrypoint) > 1 {
			args = append(append([]string(nil), s.Entrypoint[1:]...), args...)
		}
		if len(args) == 0 || args[0] == "--help" {
			continue
		}
		root := newRootCmd(&bytes.Buffer{}, &bytes.Buffer{})
		cmd, rest, err := root.Find(args)
		if err != nil || cmd == root {
			t.Errorf("service %s: %v does not name a threadmill command: %v", name, args, err)
			continue
		}
		if err := cmd.ParseFlags(rest); err != nil {
			t.Errorf("service %s: threadmill %s: %v", name, strings.Join(args, " "), err)
			continue
		}
		if err := cmd.ValidateArgs(cmd.Flags().Args()); err != nil {
			t.Errorf("service %s: threadmill %s: %v", name, strings.Join(args, " "), err)
		}
		checked++
	}
	if checked < 3 {
		t.Errorf("checked %d services, want scheduler, worker and simulator at least", checked)
	}
	for _, s := range []string{"scheduler", "worker", "simulator"} {
		if c.Services[s].Healthcheck == nil || len(c.Services[s].Healthcheck.Test) < 3 || c.Services[s].Healthcheck.Test[2] != "healthcheck" {
			t.Errorf("service %s: health check should run `threadmill healthcheck`", s)
		}
	}
}
