package main

import (
	"github.com/spf13/cobra"

	"github.com/threadmill/threadmill/pipelines"
)

func newSchemaCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "schema",
		Short: "Print the JSON Schema of the pipeline format",
		Long: `Print the JSON Schema (draft 2020-12) of the pipeline format. Editors that
speak the YAML language server pick it up from a first line such as

  # yaml-language-server: $schema=../pipelines/schema.json

The schema checks shape and enums; threadmill validate checks everything
else (references between steps and sets, templates, cron, credentials).`,
		Example: `  threadmill schema > pipeline.schema.json`,
		Args:    usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := cmd.OutOrStdout().Write(pipelines.Schema())
			return err
		},
	}
}
