package main

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/threadmill/threadmill/workspace"
	"github.com/threadmill/threadmill/workspace/simulator"
)

func lookupFromMap(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestReadWorkspaceEnv(t *testing.T) {
	t.Run("missing variables are named", func(t *testing.T) {
		_, err := readWorkspaceEnv(lookupFromMap(nil))
		if err == nil {
			t.Fatal("no error without WORKSPACE_BASE_URL and WORKSPACE_API_TOKEN")
		}
		for _, name := range []string{envBaseURL, envToken} {
			if !strings.Contains(err.Error(), name) {
				t.Errorf("error does not name %s: %v", name, err)
			}
		}
	})
	t.Run("malformed base URL", func(t *testing.T) {
		_, err := readWorkspaceEnv(lookupFromMap(map[string]string{envBaseURL: "zylon.example.com", envToken: "tok"}))
		if err == nil || !strings.Contains(err.Error(), envBaseURL) {
			t.Fatalf("want an error naming %s, got %v", envBaseURL, err)
		}
	})
	t.Run("defaults and values", func(t *testing.T) {
		e, err := readWorkspaceEnv(lookupFromMap(map[string]string{envBaseURL: "https://zylon.example.com", envToken: "s3cr3t-token", envProject: "proj_x"}))
		if err != nil {
			t.Fatal(err)
		}
		if e.Org != defaultOrg || e.Project != "proj_x" || e.Token != "s3cr3t-token" {
			t.Errorf("got %+v", e)
		}
		if strings.Contains(e.String(), "s3cr3t") {
			t.Errorf("String shows the token: %s", e)
		}
	})
}

func TestStartSimulatorServesCorpus(t *testing.T) {
	ctx := t.Context()
	base, sim, stop, err := startSimulator(ctx, "proj_cli_test")
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	if !strings.HasPrefix(base, "http://127.0.0.1:") {
		t.Errorf("base URL %q is not on loopback", base)
	}
	if sim.ProjectID() != "proj_cli_test" {
		t.Errorf("project %q", sim.ProjectID())
	}
	c, err := workspace.New(base, workspace.WithOrg(simulator.DefaultOrg))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for a, err := range c.Artifacts(ctx, "proj_cli_test", workspace.ArtifactQuery{IncludeDescendants: true}) {
		if err != nil {
			t.Fatal(err)
		}
		if a.Type != workspace.ArtifactTypeFolder {
			n++
		}
	}
	if want := len(sim.Artifacts()) - countFolders(sim.Artifacts()); n != want || n == 0 {
		t.Errorf("listed %d documents over HTTP, the simulator holds %d", n, want)
	}
	stop()
	stop() // idempotent
	if _, err := http.Get(base + "/api/health"); err == nil {
		t.Error("the simulator still answers after stop")
	}
}

func countFolders(as []workspace.Artifact) int {
	n := 0
	for _, a := range as {
		if a.Type == workspace.ArtifactTypeFolder {
			n++
		}
	}
	return n
}

func TestStartSimulatorStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	base, _, stop, err := startSimulator(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(base + "/api/health")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cancel()
	done := make(chan struct{})
	go func() { stop(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("stop did not return after the context ended")
	}
	if _, err := http.Get(base + "/api/health"); err == nil {
		t.Error("the simulator still answers after its context ended")
	}
}
