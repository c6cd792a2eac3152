package worker

import (
	"context"
	"log/slog"

	"github.com/threadmill/threadmill/internal/redishealth"
)

// initRedisHealth sets up the watcher of the worker's Redis (Config.RDB) and
// routes the worker's logs, asynq's included, through it: while Redis is
// down the worker logs one "redis connection lost" warning, demotes the
// repeated connection errors of asynq and of its own Redis calls to debug
// level, and logs "redis connection restored" with the time it was down
// when a ping answers again. Call it from New, before w.log is used.
func (w *Worker) initRedisHealth() {
	w.health = redishealth.New(redishealth.Config{RDB: w.cfg.RDB, Logger: w.cfg.Logger})
	w.log = slog.New(w.health.Handler(w.cfg.Logger.Handler()))
}

// watchRedis pings Redis until ctx is done; see initRedisHealth.
func (w *Worker) watchRedis(ctx context.Context) { w.health.Run(ctx) }
