package workspace

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Interaction states (workspace-api.md §5.2). States are open strings: a
// server may send a value not listed here and the client keeps it as is.
const (
	StateProcessing = "Processing"
	StateCompleted  = "Completed"
	StateError      = "Error"
)

// Stop reasons seen in the spec (stop, error, cancelled) and in the guide's
// examples (end_turn, max_tokens, ...). Both vocabularies are accepted.
const (
	StopReasonStop      = "stop"
	StopReasonEndTurn   = "end_turn"
	StopReasonMaxTokens = "max_tokens"
	StopReasonError     = "error"
	StopReasonCancelled = "cancelled"
)

// Message roles accepted in a ChatRequest.
const (
	RoleSystem    = "system"
	RoleUser      = "user"
	RoleAssistant = "assistant"
	RoleTool      = "tool"
)

// Thread visibilities.
const (
	VisibilityPrivate = "Private"
	VisibilityPublic  = "Public"
)

// Agent presets for interactions (the spec enum).
const (
	AgentDefault             = "Default"
	AgentProjectDeepResearch = "ProjectDeepResearch"
)

// Artifact types, states and ingest statuses used by the batch runner
// (workspace-api.md §8.2). All are open strings on the wire.
const (
	ArtifactTypeFolder     = "Folder"
	ArtifactTypeDocument   = "Document"
	ArtifactTypeInlineText = "InlineText"
	ArtifactTypeLink       = "Link"

	ArtifactStatePublished  = "Published"
	ArtifactStateReady      = "Ready" // legacy value seen in older guide copies
	ArtifactStateProcessing = "Processing"
	ArtifactStateError      = "Error"

	IngestDone          = "Done"
	IngestNotApplicable = "NotApplicable"
	IngestProcessing    = "Processing"
)

// Count is a non-negative integer decoded tolerantly: the spec types every
// numeric field as `number`, so 12, 12.0, 1.2e1 and "12" all decode to 12.
// A fractional value is truncated toward zero; null leaves the value unchanged.
type Count int64

// UnmarshalJSON implements json.Unmarshaler.
func (c *Count) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || string(b) == "null" {
		return nil
	}
	s := string(b)
	if b[0] == '"' {
		var err error
		if s, err = strconv.Unquote(s); err != nil {
			return fmt.Errorf("count: %w", err)
		}
		s = strings.TrimSpace(s)
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		*c = Count(n)
		return nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > math.MaxInt64/2 {
		return fmt.Errorf("count: %q is not a number", s)
	}
	*c = Count(f)
	return nil
}

// Usage is the token accounting of one interaction or chat answer.
type Usage struct {
	InputTokens  Count `json:"input_tokens"`
	OutputTokens Count `json:"output_tokens"`
}

// Total returns input plus output tokens.
func (u Usage) Total() int64 { return int64(u.InputTokens + u.OutputTokens) }

// Add returns the sum of two usages.
func (u Usage) Add(o Usage) Usage {
	return Usage{InputTokens: u.InputTokens + o.InputTokens, OutputTokens: u.OutputTokens + o.OutputTokens}
}

// ContentBlock is one block of a message (workspace-api.md §6). Blocks are
// discriminated on Type; only the fields of the known types a batch runner
// reads are modelled, the rest is kept in Extra when decoding.
type ContentBlock struct {
	Type      string          `json:"type"`
	Text      string          `json:"text,omitempty"`
	Thinking  string          `json:"thinking,omitempty"`
	Data      string          `json:"data,omitempty"`
	MimeType  string          `json:"mime_type,omitempty"`
	Citations []Citation      `json:"citations,omitempty"`
	Sources   json.RawMessage `json:"sources,omitempty"`
	ID        string          `json:"id,omitempty"`
	Name      string          `json:"name,omitempty"`
	Input     json.RawMessage `json:"input,omitempty"`
}

// TextBlock returns a content block of type text.
func TextBlock(text string) ContentBlock { return ContentBlock{Type: "text", Text: text} }

// Citation links a span of output to an artifact.
type Citation struct {
	ID            string `json:"id,omitempty"`
	Index         Count  `json:"index,omitempty"`
	ArtifactID    string `json:"artifact_id,omitempty"`
	SourceID      string `json:"source_id,omitempty"`
	CorrelationID string `json:"correlation_id,omitempty"`
}

// Message is a MessageInput: a role and an array of content blocks. The
// Workspace API accepts no plain-string content.
type Message struct {
	Role    string         `json:"role"`
	Content []ContentBlock `json:"content"`
}

// UserText returns a user message with a single text block.
func UserText(text string) Message {
	return Message{Role: RoleUser, Content: []ContentBlock{TextBlock(text)}}
}

// System is the `system` object of a ChatRequest (an object, not a string).
type System struct {
	Text             string     `json:"text,omitempty"`
	UseDefaultPrompt *bool      `json:"use_default_prompt,omitempty"`
	Citations        *Citations `json:"citations,omitempty"`
	Extensions       []string   `json:"extensions,omitempty"`
}

// Citations configures citation output.
type Citations struct {
	Enabled        *bool    `json:"enabled,omitempty"`
	KnownCitations []string `json:"known_citations,omitempty"`
}

// ResponseFormat selects text or JSON-schema output.
type ResponseFormat struct {
	Type       string          `json:"type"`
	JSONSchema json.RawMessage `json:"json_schema,omitempty"`
}

// Thinking toggles deep reasoning.
type Thinking struct {
	Enabled bool `json:"enabled"`
}

// Tool names a built-in or custom tool.
type Tool struct {
	Name        string          `json:"name"`
	Type        string          `json:"type,omitempty"`
	Description string          `json:"description,omitempty"`
	InputSchema json.RawMessage `json:"inputSchema,omitempty"`
}

// ToolChoice constrains tool use: Type is auto, tool or none; Name names
// the tool when Type is tool.
type ToolChoice struct {
	Type                   string `json:"type"`
	Name                   string `json:"name,omitempty"`
	DisableParallelToolUse *bool  `json:"disable_parallel_tool_use,omitempty"`
}

// ChatRequest is the model request (the `pgpt` object of interactions, and the
// bare body of /app/chat and /app/chat/validate), with every field of
// workspace-api.md §6. Pointer fields are optional and omitted when nil; the
// union-typed mcp_servers and tool_context are kept as raw JSON.
type ChatRequest struct {
	Messages          []Message       `json:"messages"`
	System            *System         `json:"system,omitempty"`
	MaxTokens         *int            `json:"max_tokens,omitempty"`
	Temperature       *float64        `json:"temperature,omitempty"`
	TopP              *float64        `json:"top_p,omitempty"`
	TopK              *int            `json:"top_k,omitempty"`
	MinP              *float64        `json:"min_p,omitempty"`
	RepetitionPenalty *float64        `json:"repetition_penalty,omitempty"`
	PresencePenalty   *float64        `json:"presence_penalty,omitempty"`
	FrequencyPenalty  *float64        `json:"frequency_penalty,omitempty"`
	Seed              *int64          `json:"seed,omitempty"`
	Stream            *bool           `json:"stream,omitempty"`
	ResponseFormat    *ResponseFormat `json:"response_format,omitempty"`
	Thinking          *Thinking       `json:"thinking,omitempty"`
	Tools             []Tool          `json:"tools,omitempty"`
	ToolChoice        *ToolChoice     `json:"tool_choice,omitempty"`
	MCPServers        json.RawMessage `json:"mcp_servers,omitempty"`
	ToolContext       json.RawMessage `json:"tool_context,omitempty"`
	Priority          *int            `json:"priority,omitempty"`
	CorrelationID     string          `json:"correlation_id,omitempty"`
}

// CreateInteractionRequest is the body of POST /app/thread/{id}/interaction:
// the ChatRequest is wrapped in `pgpt`.
type CreateInteractionRequest struct {
	ThreadID     string      `json:"thread_id"`
	PGPT         ChatRequest `json:"pgpt"`
	ArtifactIDs  []string    `json:"artifact_ids"`
	AllArtifacts bool        `json:"all_artifacts"`
	Agent        string      `json:"agent,omitempty"`
}

// MessageOutput is the assistant's answer inside an interaction.
type MessageOutput struct {
	ID         string         `json:"id,omitempty"`
	Role       string         `json:"role,omitempty"`
	Created    Count          `json:"created,omitempty"`
	Model      string         `json:"model,omitempty"`
	StopReason string         `json:"stop_reason,omitempty"`
	Content    []ContentBlock `json:"content"`
	Usage      *Usage         `json:"usage,omitempty"`
	Errors     []ErrorDetail  `json:"errors,omitempty"`
}

// Text concatenates the text of the blocks whose type is text.
func (m *MessageOutput) Text() string {
	if m == nil {
		return ""
	}
	var b strings.Builder
	for _, c := range m.Content {
		if c.Type == "text" {
			b.WriteString(c.Text)
		}
	}
	return b.String()
}

// ErrorDetail is a typed error message, as in assistant_output.errors[] and
// stream error events.
type ErrorDetail struct {
	Type    string `json:"type"`
	Message string `json:"message"`
}

// User is the UserDTO returned by GET /app/me and in created_by.
type User struct {
	ID        string   `json:"id"`
	OrgID     string   `json:"org_id"`
	AccountID string   `json:"account_id,omitempty"`
	Name      string   `json:"name"`
	Email     string   `json:"email"`
	State     string   `json:"state,omitempty"`
	Roles     []string `json:"roles,omitempty"`
	CreatedAt string   `json:"created_at,omitempty"`
}

// Thread is a conversation in a project. The spec defines no schema; these
// are the fields the guide shows.
type Thread struct {
	ID         string `json:"id"`
	ProjectID  string `json:"project_id,omitempty"`
	Name       string `json:"name"`
	Visibility string `json:"visibility"`
	State      string `json:"state,omitempty"`
	CreatedAt  string `json:"created_at,omitempty"`
}

// CreateThreadRequest is the body of POST /app/project/{id}/thread.
type CreateThreadRequest struct {
	Name       string `json:"name"`
	Visibility string `json:"visibility"`
}

// UpdateThreadRequest is the body of PUT /app/thread/{id}; nil fields are
// left unchanged.
type UpdateThreadRequest struct {
	Name       *string `json:"name,omitempty"`
	Visibility *string `json:"visibility,omitempty"`
}

// Interaction is the InteractionDTO.
type Interaction struct {
	ID              string         `json:"id"`
	ProjectID       string         `json:"project_id"`
	ThreadID        string         `json:"thread_id,omitempty"`
	State           string         `json:"state"`
	UserInput       *Message       `json:"user_input,omitempty"`
	AssistantOutput *MessageOutput `json:"assistant_output,omitempty"`
	ArtifactIDs     []string       `json:"artifact_ids,omitempty"`
	AllArtifacts    bool           `json:"all_artifacts,omitempty"`
	CreatedAt       string         `json:"created_at"`
	CreatedBy       *User          `json:"created_by,omitempty"`
	PGPT            *ChatRequest   `json:"pgpt,omitempty"`
}

// Terminal reports whether the interaction's state is final (not Processing).
func (i *Interaction) Terminal() bool { return i.State != StateProcessing }

// Output returns the answer text (empty while processing).
func (i *Interaction) Output() string { return i.AssistantOutput.Text() }

// Usage returns the interaction's usage, zero when absent.
func (i *Interaction) Usage() Usage {
	if i.AssistantOutput == nil || i.AssistantOutput.Usage == nil {
		return Usage{}
	}
	return *i.AssistantOutput.Usage
}

// StopReason returns assistant_output.stop_reason, empty when absent.
func (i *Interaction) StopReason() string {
	if i.AssistantOutput == nil {
		return ""
	}
	return i.AssistantOutput.StopReason
}

// ChatResponse is the answer of the one-shot POST /app/chat. The spec gives no
// schema: usage, stop_reason and model are optional.
type ChatResponse struct {
	ID         string         `json:"id"`
	Role       string         `json:"role"`
	Content    []ContentBlock `json:"content"`
	Model      string         `json:"model,omitempty"`
	StopReason string         `json:"stop_reason,omitempty"`
	Usage      *Usage         `json:"usage,omitempty"`
}

// Text concatenates the text blocks of the answer.
func (r *ChatResponse) Text() string {
	return (&MessageOutput{Content: r.Content}).Text()
}

// Artifact is the ArtifactDTO (fields a batch runner reads).
type Artifact struct {
	ID           string          `json:"id"`
	ProjectID    string          `json:"project_id"`
	Name         string          `json:"name"`
	Type         string          `json:"type"`
	Source       string          `json:"source,omitempty"`
	State        string          `json:"state"`
	IngestStatus string          `json:"ingest_status"`
	ParentID     *string         `json:"parent_id"`
	ChildCount   Count           `json:"child_count"`
	Description  string          `json:"description,omitempty"`
	HasContent   bool            `json:"has_content,omitempty"`
	Content      string          `json:"content,omitempty"`
	Props        json.RawMessage `json:"props,omitempty"`
	CreatedAt    string          `json:"created_at,omitempty"`
	UpdatedAt    string          `json:"updated_at,omitempty"`
}

// Usable reports whether the artifact can be used as context: Published (or
// the legacy Ready) with ingest status Done or NotApplicable, and not a Folder.
func (a *Artifact) Usable() bool {
	if a.Type == ArtifactTypeFolder {
		return false
	}
	okState := a.State == ArtifactStatePublished || a.State == ArtifactStateReady
	okIngest := a.IngestStatus == IngestDone || a.IngestStatus == IngestNotApplicable
	return okState && okIngest
}

// Page is the shared pagination envelope (workspace-api.md §3).
type Page[T any] struct {
	Data            []T    `json:"data"`
	NextCursor      string `json:"next_cursor,omitempty"`
	PreviousCursor  string `json:"previous_cursor,omitempty"`
	HasNextPage     bool   `json:"has_next_page"`
	HasPreviousPage bool   `json:"has_previous_page"`
	TotalCount      *Count `json:"total_count,omitempty"`
}

// EstimateTokens is threadmill's token heuristic: one token per four bytes of
// UTF-8 text, rounded up. The simulator counts usage with it, and planning
// uses it to estimate requests, so estimates and simulated usage agree.
func EstimateTokens(text string) int64 { return int64(len(text)+3) / 4 }

// PageParams are the shared pagination query parameters (workspace-api.md §3).
// Zero values are not sent.
type PageParams struct {
	Page       int    // 1-based page number
	PageSize   int    // items per page; server default 20
	PageOrder  string // ASC or DESC
	After      string // cursor
	Before     string // cursor
	First      int
	Last       int
	TotalCount bool // ask the server to include total_count
}

// ThreadQuery filters GET /app/project/{id}/thread.
type ThreadQuery struct {
	State   []string // Active, Deleted
	Include []string // User
	PageParams
}

// ArtifactQuery holds every filter of GET /app/project/{id}/artifact
// (workspace-api.md §8.3). Zero values are not sent; list values are sent
// comma-separated.
type ArtifactQuery struct {
	State              []string // default on the server: Published,Processing
	IngestStatus       []string
	Type               []string
	SubType            []string
	Source             []string
	ParentID           string // absent: root-level artifacts only
	IncludeDescendants bool   // whole subtree (or whole project without ParentID)
	FilterByText       string
	KeepAncestors      bool
	ResolveLinks       bool
	FilterByParent     bool
	CreatedBy          string
	OrderBy            string // Alphabetical
	Order              string // ASC, DESC, *_NULLS_FIRST, *_NULLS_LAST
	Include            []string
	PageParams
}

// ArtifactGetQuery holds the optional query parameters of GET .../artifact/{id}.
type ArtifactGetQuery struct {
	IncludeContent       bool
	IncludeReferences    bool
	IncludeRelationships bool
	Include              []string
}
