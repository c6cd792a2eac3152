package worker

import (
	"context"
	"path/filepath"

	"github.com/threadmill/threadmill/notify"
	"github.com/threadmill/threadmill/results"
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
