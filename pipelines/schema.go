package pipelines

import (
	"bytes"
	_ "embed"
)

//go:embed schema.json
var schemaJSON []byte

// SchemaURL is the schema's $id.
const SchemaURL = "https://github.com/threadmill/threadmill/pipelines/schema.json"

// Schema returns the JSON Schema (draft 2020-12) of the pipeline format, as
// `threadmill schema` prints it. A test keeps it in step with the Go types:
// every YAML key of every type is in the schema and every property of the
// schema is a YAML key.
func Schema() []byte { return bytes.Clone(schemaJSON) }
