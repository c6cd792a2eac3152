package metrics

import (
	"log/slog"
	"slices"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
)

// QueueInspector is the part of *asynq.Inspector a QueueCollector reads.
type QueueInspector interface {
	Queues() ([]string, error)
	GetQueueInfo(queue string) (*asynq.QueueInfo, error)
}

var _ QueueInspector = (*asynq.Inspector)(nil)

// QueueCollector reports the size of asynq's queues at scrape time, read
// through asynq's Inspector (the numbers asynqmon and `asynq stats` show):
//
//	threadmill_queue_tasks{queue,state}          pending, active, scheduled, retry, archived, completed, aggregating
//	threadmill_queue_latency_seconds{queue}      age of the oldest pending task
//	threadmill_queue_paused{queue}               1 when the queue is paused
//	threadmill_queue_memory_bytes{queue}         Redis memory used, sampled by asynq
//	threadmill_queue_processed_total{queue}      tasks processed since the queue existed
//	threadmill_queue_failed_total{queue}         tasks failed since the queue existed
//	threadmill_queue_inspector_up                0 when Redis could not be read
//
// Queues that asynq does not know yet (no task was ever enqueued) are
// reported with zeros when they are listed in Queues, so dashboards see the
// series from the start.
type QueueCollector struct {
	insp   QueueInspector
	queues []string
	log    *slog.Logger

	tasks     *prometheus.Desc
	latency   *prometheus.Desc
	paused    *prometheus.Desc
	memory    *prometheus.Desc
	processed *prometheus.Desc
	failed    *prometheus.Desc
	up        *prometheus.Desc
}

var _ prometheus.Collector = (*QueueCollector)(nil)

// NewQueueCollector returns a collector reading insp. queues are always
// reported (with zeros while they do not exist); other queues are reported
// when asynq knows them. logger receives read errors (nil: discarded).
//
// Inspector calls take no context: the timeouts of the Redis client behind
// insp bound a scrape while Redis is unreachable.
func NewQueueCollector(insp QueueInspector, queues []string, logger *slog.Logger) *QueueCollector {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(Namespace, "queue", name), help, labels, nil)
	}
	return &QueueCollector{
		insp:      insp,
		queues:    slices.Clone(queues),
		log:       logger,
		tasks:     d("tasks", "Tasks in an asynq queue, by state.", "queue", "state"),
		latency:   d("latency_seconds", "Age of the oldest pending task of an asynq queue.", "queue"),
		paused:    d("paused", "1 when the asynq queue is paused.", "queue"),
		memory:    d("memory_bytes", "Approximate Redis memory used by an asynq queue and its tasks.", "queue"),
		processed: d("processed_total", "Tasks processed (succeeded or failed) in an asynq queue since it was created.", "queue"),
		failed:    d("failed_total", "Tasks failed in an asynq queue since it was created.", "queue"),
		up:        d("inspector_up", "1 when the last read of the asynq queues from Redis succeeded."),
	}
}

// Describe implements prometheus.Collector.
func (c *QueueCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.tasks, c.latency, c.paused, c.memory, c.processed, c.failed, c.up} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *QueueCollector) Collect(ch chan<- prometheus.Metric) {
	up := 1.0
	defer func() { ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, up) }()

	names, err := c.insp.Queues()
	if err != nil {
		c.log.Warn("metrics: listing asynq queues failed", "err", err)
		up = 0
		return
	}
	known := make(map[string]bool, len(names))
	for _, q := range names {
		known[q] = true
	}
	for _, q := range c.queues {
		if !known[q] {
			names = append(names, q)
		}
	}
	slices.Sort(names)
	for _, q := range names {
		if !known[q] {
			// asynq answers "not found" for a queue that never held a task.
			c.collectQueue(ch, q, &asynq.QueueInfo{Queue: q})
			continue
		}
		info, err := c.insp.GetQueueInfo(q)
		if err != nil {
			c.log.Warn("metrics: reading asynq queue failed", "queue", q, "err", err)
			up = 0
			continue
		}
		c.collectQueue(ch, q, info)
	}
}

func (c *QueueCollector) collectQueue(ch chan<- prometheus.Metric, q string, info *asynq.QueueInfo) {
	g := prometheus.GaugeValue
	for _, s := range []struct {
		state string
		n     int
	}{
		{"pending", info.Pending}, {"active", info.Active}, {"scheduled", info.Scheduled},
		{"retry", info.Retry}, {"archived", info.Archived}, {"completed", info.Completed},
		{"aggregating", info.Aggregating},
	} {
		ch <- prometheus.MustNewConstMetric(c.tasks, g, float64(s.n), q, s.state)
	}
	ch <- prometheus.MustNewConstMetric(c.latency, g, info.Latency.Seconds(), q)
	paused := 0.0
	if info.Paused {
		paused = 1
	}
	ch <- prometheus.MustNewConstMetric(c.paused, g, paused, q)
	ch <- prometheus.MustNewConstMetric(c.memory, g, float64(info.MemoryUsage), q)
	ch <- prometheus.MustNewConstMetric(c.processed, prometheus.CounterValue, float64(info.ProcessedTotal), q)
	ch <- prometheus.MustNewConstMetric(c.failed, prometheus.CounterValue, float64(info.FailedTotal), q)
}
