package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

// Exit codes of the threadmill command.
const (
	exitOK          = 0 // success
	exitFailure     = 1 // an error: bad input, invalid pipeline, run could not start
	exitUsage       = 2 // bad flags or arguments
	exitItemsFailed = 3 // a run finished, but some items failed or were skipped
	exitCanceled    = 4 // a run was canceled (threadmill cancel)
)

// exitError carries a specific exit code through cobra.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// withCode wraps err so that the command exits with code.
func withCode(code int, err error) error { return &exitError{code: code, err: err} }

// version is set at build time with -ldflags "-X main.version=..."; it falls
// back to the module version recorded by the Go toolchain.
var version = ""

func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}

// newRootCmd builds the command tree. Each subcommand lives in its own file.
func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "threadmill",
		Short:         "Run YAML prompt pipelines over the artifacts of a Zylon Workspace",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return withCode(exitUsage, err) })
	root.AddCommand(
		newVersionCmd(),
		newSimulateCmd(),
		newValidateCmd(),
		newPlanCmd(),
		newSchemaCmd(),
		newHealthcheckCmd(),
		newRunCmd(),
		newWorkerCmd(),
		newEnqueueCmd(),
		newStatusCmd(),
		newRunsCmd(),
		newCancelCmd(),
		newRetryCmd(),
		newRerunCmd(),
		newSchedulerCmd(),
		newScheduleCmd(),
		newBackfillCmd(),
		newUICmd(),
	)
	markUsageErrors(root)
	return root
}

// markUsageErrors makes every positional-argument error in the tree exit with
// exitUsage, whichever command defines it.
func markUsageErrors(c *cobra.Command) {
	if c.Args != nil {
		c.Args = usageArgs(c.Args)
	}
	for _, sub := range c.Commands() {
		markUsageErrors(sub)
	}
}

// execute runs the command line and returns the process exit code.
func execute(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRootCmd(stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintln(stderr, "threadmill:", err)
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	if strings.HasPrefix(err.Error(), "unknown command ") {
		return exitUsage // cobra's own error, before any command runs
	}
	return exitFailure
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the threadmill version",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), "threadmill", buildVersion())
			return err
		},
	}
}
