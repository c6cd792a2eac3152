package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/threadmill/threadmill/pipelines"
	"github.com/threadmill/threadmill/runstore"
	"github.com/threadmill/threadmill/scheduler"
)

// scheduleLsOptions are the inputs of `threadmill schedule ls`.
type scheduleLsOptions struct {
	Pipelines pipelinesDirFlag
	Redis     redisFlags
	JSON      bool
	// Next is how many fire times to show per pipeline.
	Next int
	// Now is the time the next fire times follow; default time.Now.
	Now func() time.Time
	// LookupEnv reads ${VAR} in pipeline files, THREADMILL_PIPELINES and
	// THREADMILL_REDIS_URL; default os.LookupEnv.
	LookupEnv func(string) (string, bool)
}

func newScheduleCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "schedule",
		Short: "Inspect the schedules of a pipelines directory",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withCode(exitUsage, fmt.Errorf("schedule needs a subcommand: ls"))
		},
	}
	cmd.AddCommand(newScheduleLsCmd())
	return cmd
}

func newScheduleLsCmd() *cobra.Command {
	o := &scheduleLsOptions{}
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List the scheduled pipelines, their next fire times and their last run",
		Long: `List every pipeline of the directory that has a schedule: its cron
expression and zone, its catch-up policy, its next three fire times (in its
zone), and its last run with that run's status. Files that do not load are
reported as file:line:col after the table, and the exit code is then 1.
The first line names the directory read and where it came from: --pipelines,
else ` + envPipelines + `, else ./` + defaultPipelinesDir + `.

The last run is read from Redis (--redis, else THREADMILL_REDIS_URL); without
one, the table has no last-run column.

` + redisURLHelp,
		Example: `  threadmill schedule ls --pipelines ./pipelines.d --redis redis://localhost:6379`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Next < 1 || o.Next > 100 {
				return withCode(exitUsage, fmt.Errorf("--next must be in 1..100, got %d", o.Next))
			}
			return runScheduleLs(cmd.Context(), o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	o.Pipelines.add(f)
	o.Redis.add(f, "Redis URL to read the last runs from (default: "+envRedisURL+"; none: no last runs)")
	f.BoolVar(&o.JSON, "json", false, "print JSON instead of a table")
	f.IntVar(&o.Next, "next", 3, "how many next fire times to show")
	return cmd
}

// scheduleListing is what `schedule ls --json` prints.
type scheduleListing struct {
	Dir string `json:"dir"`
	// DirSource says where Dir came from: "--pipelines",
	// "THREADMILL_PIPELINES" or "default".
	DirSource string                  `json:"dir_source"`
	Pipelines []scheduler.Description `json:"pipelines"`
	Problems  []string                `json:"problems,omitempty"`
	// Unscheduled are valid pipeline files without a schedule.
	Unscheduled []string `json:"unscheduled,omitempty"`
}

func runScheduleLs(ctx context.Context, o *scheduleLsOptions, stdout, stderr io.Writer) error {
	lookup := envLookup(o.LookupEnv)
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	dir, dirSource := o.Pipelines.resolve(lookup)
	if err := checkPipelinesDir(dir, dirSource); err != nil {
		return err
	}
	snap, err := scheduler.NewDir(dir, func(path string) (*pipelines.Pipeline, error) { return pipelines.Load(path, lookup) }).Scan()
	if err != nil {
		return err
	}
	var store *runstore.Store
	if redisURL, source := o.Redis.resolve(lookup); redisURL != "" {
		rc, err := connectRedis(ctx, redisURL, source, 4)
		if err != nil {
			return err
		}
		defer rc.Close()
		store = runstore.New(rc.RDB, "")
	}
	withRuns := store != nil
	descs, err := scheduler.Describe(ctx, snap.Entries, store, now(), o.Next)
	if err != nil {
		return err
	}

	if o.JSON {
		l := scheduleListing{Dir: dir, DirSource: dirSource, Pipelines: descs, Unscheduled: snap.Unscheduled}
		if l.Pipelines == nil {
			l.Pipelines = []scheduler.Description{}
		}
		for _, p := range snap.Problems {
			l.Problems = append(l.Problems, p.Error())
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(l); err != nil {
			return err
		}
	} else {
		fmt.Fprintln(stdout, describePipelinesDir(dir, dirSource))
		if err := printSchedule(stdout, descs, withRuns); err != nil {
			return err
		}
	}
	if len(snap.Problems) > 0 {
		for _, p := range snap.Problems {
			fmt.Fprintln(stderr, p.Error())
		}
		return withCode(exitFailure, fmt.Errorf("%s: %s not scheduled", dir, plural(len(snap.Problems), "file")))
	}
	return nil
}

// printSchedule writes the table: one row per fire time, the pipeline's
// columns on its first row.
func printSchedule(w io.Writer, descs []scheduler.Description, withRuns bool) error {
	if len(descs) == 0 {
		_, err := fmt.Fprintln(w, "no scheduled pipelines")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	head := []string{"PIPELINE", "CRON", "TIMEZONE", "CATCHUP", "NEXT FIRE TIMES"}
	if withRuns {
		head = append(head, "LAST RUN", "STATUS")
	}
	fmt.Fprintln(tw, strings.Join(head, "\t"))
	layout := "Mon 2006-01-02 15:04 -07:00"
	for _, d := range descs {
		for _, t := range d.Next {
			if t.Second() != 0 {
				layout = "Mon 2006-01-02 15:04:05 -07:00" // an @every schedule
			}
		}
	}
	for _, d := range descs {
		rows := max(len(d.Next), 1)
		for i := range rows {
			next := "never"
			if i < len(d.Next) {
				next = d.Next[i].Format(layout)
			}
			cols := []string{"", "", "", "", next}
			if i == 0 {
				cols = []string{d.Pipeline, d.Cron, d.Timezone, string(d.Catchup), next}
			}
			if withRuns {
				run, status := "", ""
				if i == 0 {
					run, status = orDash(d.LastRun), orDash(d.LastStatus)
				}
				cols = append(cols, run, status)
			}
			fmt.Fprintln(tw, strings.TrimRight(strings.Join(cols, "\t"), "\t"))
		}
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
