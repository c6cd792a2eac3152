package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/threadmill/threadmill/internal/redistest"
	"github.com/threadmill/threadmill/runstore"
)

// status shows the fleet-wide pause the API asked for, with the Retry-After
// it sent and the cap that applied.
func TestStatusShowsTheAPIPause(t *testing.T) {
	unsetRunnerEnv(t)
	rs := redistest.Start(t)
	t.Setenv(envRedisURL, rs.URL())
	store := runstore.New(rs.Client(t), "")

	code, stdout, stderr := runnerCLI(t.Context(), "status")
	if code != exitOK || strings.Contains(stdout, "paused") {
		t.Fatalf("status without a pause: exit %d\n%s\n%s", code, stdout, stderr)
	}

	if _, err := store.PauseFor(t.Context(), runstore.PauseRequest{Wait: 2 * time.Minute, Asked: 24 * time.Hour, Status: 429}); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr = runnerCLI(t.Context(), "status")
	if code != exitOK || !strings.Contains(stdout, "paused by the API until ") ||
		!strings.Contains(stdout, "(429, Retry-After 86400s capped to 2m0s); every worker waits") {
		t.Errorf("status during a capped pause: exit %d\n%s\n%s", code, stdout, stderr)
	}

	code, stdout, stderr = runnerCLI(t.Context(), "status", "--json")
	var got struct {
		Pause *struct {
			Left    int64 `json:"left_ms"`
			Asked   int64 `json:"asked_ms"`
			Granted int64 `json:"granted_ms"`
			Capped  bool  `json:"capped"`
			Status  int   `json:"status"`
		} `json:"api_pause"`
	}
	if err := json.Unmarshal([]byte(stdout), &got); code != exitOK || err != nil || got.Pause == nil {
		t.Fatalf("status --json: exit %d, %v\n%s\n%s", code, err, stdout, stderr)
	}
	if p := got.Pause; p.Asked != 86400000 || p.Granted != 120000 || !p.Capped || p.Status != 429 || p.Left <= 0 || p.Left > 120000 {
		t.Errorf("api_pause %+v", *p)
	}
}
