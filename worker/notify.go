package worker

import (
	"context"
	"path/filepath"
	"time"

	"github.com/threadmill/threadmill/notify"
	"github.com/threadmill/threadmill/results"
	"github.com/threadmill/threadmill/runstore"
)

// notifyRun calls the pipeline's notify webhooks for a run whose directory
// dir is committed, from its run.json. Failures are logged by the sender;
// the run and its files are already complete.
func (w *Worker) notifyRun(ctx context.Context, rc *runCtx, dir string) {
	hooks := rc.spec.Pipeline.Notify
	if len(hooks) == 0 {
		return
	}
	r, err := results.ReadRun(dir)
	if err != nil {
		rc.log.Warn("webhooks not called: run.json cannot be read", "error", err)
		return
	}
	w.cfg.Notifier.Send(ctx, hooks, payloadOf(r, dir))
}

// payloadOf describes a finished run for its webhooks.
func payloadOf(r *results.Run, dir string) notify.Payload {
	p := notify.Payload{
		RunID: r.RunID, Pipeline: r.Pipeline, Status: r.Status,
		Total: r.Total, Counts: r.Counts, Reused: r.Reused,
		Usage: r.Usage, TotalTokens: r.Usage.Total(),
		FireTime: r.FireTime, WindowStart: r.WindowStart, WindowEnd: r.WindowEnd,
		StartedAt: r.StartedAt, FinishedAt: r.FinishedAt,
		ResultDir: dir, ReportPath: filepath.Join(dir, results.ReportFile),
	}
	if pub := r.Published; pub != nil && pub.Error == "" {
		p.PublishedArtifactID, p.PublishedName = pub.ArtifactID, pub.Name
	}
	p.Summary()
	return p
}

// notifyError calls the webhooks that want errors for a run that could
// not start or finish (StatusError): it has no result files.
func (w *Worker) notifyError(ctx context.Context, rc *runCtx, cause error) {
	hooks := rc.spec.Pipeline.Notify
	if len(hooks) == 0 {
		return
	}
	info := rc.spec.Info
	p := notify.Payload{RunID: rc.id, Pipeline: rc.spec.Pipeline.Name, Status: runstore.StatusError, Error: cause.Error(), FinishedAt: time.Now()}
	if !info.WindowStart.IsZero() {
		p.WindowStart, p.WindowEnd = &info.WindowStart, &info.WindowEnd
	}
	if !info.Time.IsZero() {
		p.FireTime = &info.Time
	}
	p.Summary()
	w.cfg.Notifier.Send(ctx, hooks, p)
}
