package scheduler

import (
	"context"
	"encoding/json"
	"net/http"
	"time"
)

// Health is the scheduler's health, as /healthz reports it.
type Health struct {
	// OK is true when Redis answers, the last sync succeeded and it is
	// recent (within three sync intervals).
	OK bool `json:"ok"`
	// Redis is "ok" or the ping error.
	Redis string `json:"redis"`
	// LastSync is when the directory was last synced successfully.
	LastSync time.Time `json:"last_sync,omitzero"`
	// SyncError is the last sync's error, if it failed.
	SyncError string `json:"sync_error,omitempty"`
	// Entries are the scheduled pipelines.
	Entries []string `json:"entries"`
	// Problems are the pipeline files that do not load (their last good
	// version, if any, stays scheduled).
	Problems []string `json:"problems,omitempty"`
}

// Health checks Redis and reports the state of the last sync.
func (s *Scheduler) Health(ctx context.Context) Health {
	h := Health{Redis: "ok", Entries: []string{}}
	if err := s.cfg.RDB.Ping(ctx).Err(); err != nil {
		h.Redis = err.Error()
	}
	s.mu.RLock()
	h.LastSync = s.lastSync
	if s.syncErr != nil {
		h.SyncError = s.syncErr.Error()
	}
	for _, p := range s.problems {
		h.Problems = append(h.Problems, p.Error())
	}
	s.mu.RUnlock()
	for _, e := range s.Entries() {
		h.Entries = append(h.Entries, e.Name())
	}
	fresh := !h.LastSync.IsZero() && s.cfg.Now().Sub(h.LastSync) <= 3*s.cfg.SyncInterval
	h.OK = h.Redis == "ok" && h.SyncError == "" && fresh
	return h
}

// HealthHandler serves Health as JSON: 200 when OK, 503 otherwise.
func (s *Scheduler) HealthHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		h := s.Health(ctx)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		if !h.OK {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(h)
	})
}
