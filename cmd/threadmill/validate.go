package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/threadmill/threadmill/pipelines"
)

// validateOptions are the inputs of `threadmill validate`.
type validateOptions struct {
	// Paths are pipeline files or directories (searched recursively for
	// *.yaml and *.yml, skipping hidden directories).
	Paths []string
	// JSON prints the problems as a JSON array instead of lines.
	JSON bool
	// LookupEnv resolves ${VAR}; default os.LookupEnv.
	LookupEnv func(string) (string, bool)
}

func newValidateCmd() *cobra.Command {
	var opts validateOptions
	cmd := &cobra.Command{
		Use:   "validate PATH...",
		Short: "Check pipeline files and report every problem as file:line:col: message",
		Long: `Check pipeline files: strict decoding (unknown keys, wrong types), ${VAR}
interpolation, and every check for meaning (step ids and needs, artifact sets,
modes, cron and time zone, limits, templates, no credentials in the file).

PATH is a file or a directory; directories are searched recursively for
*.yaml and *.yml files. Every problem of every file is printed, sorted by
position, as file:line:col: message. Nothing is contacted.

Exit status: 0 when every file is valid, 1 when any file has a problem.`,
		Example: `  threadmill validate examples/
  threadmill validate --json pipelines/weekly.yaml`,
		Args: usageArgs(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Paths = args
			return runValidate(cmd.Context(), opts, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print the problems as a JSON array of {file, line, col, message}")
	return cmd
}

// runValidate validates every pipeline file under opts.Paths.
func runValidate(ctx context.Context, opts validateOptions, stdout, stderr io.Writer) error {
	lookup := envLookup(opts.LookupEnv)
	files, problems := pipelineFiles(opts.Paths)
	invalid := 0
	for _, f := range files {
		if err := ctx.Err(); err != nil {
			return err
		}
		_, err := pipelines.Load(f, lookup)
		if err == nil {
			continue
		}
		invalid++
		var list pipelines.ErrorList
		if errors.As(err, &list) {
			problems = append(problems, list...)
		} else {
			problems = append(problems, &pipelines.Error{File: f, Msg: err.Error()})
		}
	}
	if opts.JSON {
		if problems == nil {
			problems = pipelines.ErrorList{}
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(problems); err != nil {
			return err
		}
	} else {
		for _, p := range problems {
			if _, err := fmt.Fprintln(stdout, p.Error()); err != nil {
				return err
			}
		}
	}
	if len(problems) == 0 {
		fmt.Fprintf(stderr, "%s valid\n", plural(len(files), "pipeline file"))
		return nil
	}
	if len(files) == 0 {
		return withCode(exitFailure, fmt.Errorf("%s found; no pipeline file was checked", plural(len(problems), "problem")))
	}
	return withCode(exitFailure, fmt.Errorf("%s found; %d of %s invalid",
		plural(len(problems), "problem"), invalid, plural(len(files), "pipeline file")))
}

// pipelineFiles expands paths into pipeline files, sorted, reporting paths
// that do not exist and directories with no pipeline file.
func pipelineFiles(paths []string) ([]string, pipelines.ErrorList) {
	var files []string
	var problems pipelines.ErrorList
	for _, root := range paths {
		fi, err := os.Stat(root)
		if err != nil {
			problems = append(problems, &pipelines.Error{File: root, Msg: errMsg(err)})
			continue
		}
		if !fi.IsDir() {
			files = append(files, root)
			continue
		}
		found := 0
		err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				problems = append(problems, &pipelines.Error{File: p, Msg: errMsg(err)})
				return nil
			}
			if d.IsDir() {
				if p != root && strings.HasPrefix(d.Name(), ".") {
					return filepath.SkipDir
				}
				return nil
			}
			if ext := filepath.Ext(p); ext == ".yaml" || ext == ".yml" {
				files = append(files, p)
				found++
			}
			return nil
		})
		if err != nil {
			problems = append(problems, &pipelines.Error{File: root, Msg: errMsg(err)})
		} else if found == 0 {
			problems = append(problems, &pipelines.Error{File: root, Msg: "no pipeline files (*.yaml, *.yml) in this directory"})
		}
	}
	slices.Sort(files)
	return slices.Compact(files), problems
}

// errMsg is an error's message without the path os errors repeat.
func errMsg(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// plural formats a count and a noun ("1 file", "2 files").
func plural(n int, noun string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, noun)
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// usageArgs makes an argument-count error exit with the usage code, and
// shows the command's usage line with it.
func usageArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			var ee *exitError
			if errors.As(err, &ee) {
				return err // already a usage error
			}
			return withCode(exitUsage, fmt.Errorf("%s: %w (usage: %s)", cmd.Name(), err, cmd.UseLine()))
		}
		return nil
	}
}
