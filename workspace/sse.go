package workspace

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Event types of an interaction stream (workspace-api.md §5.4). Types are
// open strings: an unknown type is returned as is and ignored by ReadStream.
const (
	EventMessageStart          = "message_start"
	EventContentBlockStart     = "content_block_start"
	EventContentBlockDelta     = "content_block_delta"
	EventContentBlockStop      = "content_block_stop"
	EventContentBlockSynthetic = "content_block_synthetic"
	EventMessageDelta          = "message_delta"
	EventMessageStop           = "message_stop"
	EventPing                  = "ping"
	EventError                 = "error"
	EventDone                  = "done"
)

// Delta types inside content_block_delta. Only text_delta contributes to
// the answer text.
const (
	DeltaText      = "text_delta"
	DeltaThinking  = "thinking_delta"
	DeltaInputJSON = "input_json_delta"
	DeltaSource    = "source_delta"
)

// Limits bound the memory a stream can make the client hold, whatever the
// server sends. Zero fields take the defaults of DefaultLimits.
type Limits struct {
	// MaxLine is the longest accepted line, in bytes (default 1 MiB).
	MaxLine int
	// MaxEvent is the most data one event may carry, in bytes, summed over
	// its data lines (default 8 MiB).
	MaxEvent int
	// MaxTotal is the most bytes read from one stream (default 16 MiB,
	// some 100,000 events: a stream over it fails, and WaitInteraction
	// then polls the interaction instead).
	MaxTotal int64
}

// DefaultLimits returns the default stream limits: 1 MiB lines, 8 MiB
// events, 16 MiB streams. They count decoded bytes.
func DefaultLimits() Limits {
	return Limits{MaxLine: 1 << 20, MaxEvent: 8 << 20, MaxTotal: 16 << 20}
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxLine > 0 {
		d.MaxLine = l.MaxLine
	}
	if l.MaxEvent > 0 {
		d.MaxEvent = l.MaxEvent
	}
	if l.MaxTotal > 0 {
		d.MaxTotal = l.MaxTotal
	}
	return d
}

func (l Limits) validate() error {
	switch {
	case l.MaxLine < 0:
		return fmt.Errorf("MaxLine %d is negative", l.MaxLine)
	case l.MaxEvent < 0:
		return fmt.Errorf("MaxEvent %d is negative", l.MaxEvent)
	case l.MaxTotal < 0:
		return fmt.Errorf("MaxTotal %d is negative", l.MaxTotal)
	}
	return nil
}

// Event is one server-sent event of an interaction stream, with the fields
// of the known types decoded.
type Event struct {
	// Type is the event's name: its `event:` field, else the `type` of its
	// JSON data, else "message".
	Type string
	// ID is the event's `id:` field, if any.
	ID string
	// Data is the event's data, its data lines joined with "\n".
	Data []byte

	// BlockID names the content block of content_block_* events; it is
	// empty when the server omits it.
	BlockID string
	// Index is the block's `index`, when the server sends one.
	Index *int
	// Block is the block of content_block_start (content_block) and
	// content_block_synthetic (block).
	Block *ContentBlock
	// Delta is the payload of content_block_delta.
	Delta *Delta
	// Message is the message of message_start.
	Message *MessageOutput
	// StopReason is set by message_delta.
	StopReason string
	// Usage is set by message_delta (read inside delta, else beside it) and
	// by message_start when its message carries usage.
	Usage *Usage
	// Error is the error of an error event.
	Error *ErrorDetail
}

// Delta is the incremental payload of a content_block_delta event.
type Delta struct {
	// Type is text_delta, thinking_delta, input_json_delta, source_delta,
	// tldr_delta or a type not known yet.
	Type string `json:"type"`
	// Text is the text of a text_delta.
	Text string `json:"text,omitempty"`
	// Thinking is the text of a thinking_delta.
	Thinking string `json:"thinking,omitempty"`
	// PartialJSON is the fragment of an input_json_delta.
	PartialJSON string `json:"partial_json,omitempty"`
	// Citations are the citations of a text_delta.
	Citations []Citation `json:"citations,omitempty"`
	// Sources are the raw sources of a source_delta.
	Sources json.RawMessage `json:"sources,omitempty"`
}

// EventReader reads server-sent events from a stream. It accepts LF, CRLF
// and CR line endings, data split over several lines, comments, and any
// field or event type, and it enforces Limits. It is not safe for concurrent
// use.
type EventReader struct {
	sc     *bufio.Scanner
	cr     *countingReader
	lim    Limits
	line   int  // lines read so far
	broken bool // the last line read had no line terminator (EOF mid-line)
	ioErr  bool // err is a failure of the underlying reader
	err    error
}

// NewEventReader returns a reader of the events in r under the limits l
// (zero fields take their defaults).
func NewEventReader(r io.Reader, l Limits) *EventReader {
	l = l.withDefaults()
	er := &EventReader{lim: l, cr: &countingReader{r: r, max: l.MaxTotal}}
	er.sc = bufio.NewScanner(er.cr)
	er.sc.Buffer(make([]byte, 0, min(l.MaxLine+2, 4<<10)), l.MaxLine+2) // grows on demand up to MaxLine
	er.sc.Split(er.splitLines)
	return er
}

// splitLines splits on LF, CRLF or a lone CR, remembering whether the last
// line had a terminator.
func (r *EventReader) splitLines(data []byte, atEOF bool) (int, []byte, error) {
	i := bytes.IndexAny(data, "\r\n")
	switch {
	case i < 0:
		if atEOF && len(data) > 0 {
			r.broken = true
			return len(data), data, nil
		}
		return 0, nil, nil
	case data[i] == '\n':
		return i + 1, data[:i], nil
	case i+1 < len(data):
		if data[i+1] == '\n' {
			return i + 2, data[:i], nil
		}
		return i + 1, data[:i], nil
	case atEOF:
		return i + 1, data[:i], nil
	}
	return 0, nil, nil // a CR at the end of the buffer: is an LF next?
}

// Next returns the next event. It returns io.EOF at the end of the stream
// (an event cut by the end of the stream, mid-line, is dropped), and an error
// matching ErrBodyTooLarge when a limit is exceeded. After an error, Next
// returns the same error.
func (r *EventReader) Next() (Event, error) {
	if r.err != nil {
		return Event{}, r.err
	}
	ev, err := r.next()
	if err != nil {
		r.err = err
	}
	return ev, err
}

func (r *EventReader) next() (Event, error) {
	var (
		name, id string
		data     []byte
		hasData  bool
		start    int // line where the event began
	)
	for r.sc.Scan() {
		line := r.sc.Bytes()
		r.line++
		if r.line == 1 {
			line = bytes.TrimPrefix(line, []byte("\xEF\xBB\xBF"))
		}
		if r.broken {
			break // a partial last line: the connection was cut mid-line
		}
		if len(line) == 0 {
			if !hasData && name == "" {
				continue
			}
			return r.build(name, id, data, start)
		}
		if line[0] == ':' {
			continue // comment
		}
		if start == 0 {
			start = r.line
		}
		field, value := line, []byte(nil)
		if i := bytes.IndexByte(line, ':'); i >= 0 {
			field, value = line[:i], line[i+1:]
			value = bytes.TrimPrefix(value, []byte(" "))
		}
		switch string(field) {
		case "data":
			if len(data)+len(value)+1 > r.lim.MaxEvent {
				return Event{}, limitErrorf("sse: line %d: event data exceeds the %s limit", r.line, byteSize(int64(r.lim.MaxEvent)))
			}
			if hasData {
				data = append(data, '\n')
			}
			data = append(data, value...)
			hasData = true
		case "event":
			name = string(value)
		case "id":
			if bytes.IndexByte(value, 0) < 0 {
				id = string(value)
			}
		}
	}
	if err := r.sc.Err(); err != nil {
		switch {
		case errors.Is(err, bufio.ErrTooLong):
			return Event{}, limitErrorf("sse: line %d: the line exceeds the %s limit", r.line+1, byteSize(int64(r.lim.MaxLine)))
		case errors.Is(err, errStreamTooLarge):
			return Event{}, limitErrorf("sse: line %d: the stream exceeds the %s limit", r.line+1, byteSize(r.lim.MaxTotal))
		}
		r.ioErr = true
		return Event{}, fmt.Errorf("sse: line %d: %w", r.line+1, err)
	}
	// EOF. An event whose lines all ended but without the blank line that
	// dispatches it is kept; a partial line means a cut and drops it.
	if !r.broken && (hasData || name != "") {
		return r.build(name, id, data, start)
	}
	return Event{}, io.EOF
}

// wireEvent is the union of the JSON data of all known event types, decoded
// in one pass.
type wireEvent struct {
	Type         string          `json:"type"`
	BlockID      flexString      `json:"block_id"`
	Index        *Count          `json:"index"`
	ContentBlock *ContentBlock   `json:"content_block"`
	Block        *ContentBlock   `json:"block"`
	Delta        *wireDelta      `json:"delta"`
	Message      *MessageOutput  `json:"message"`
	Usage        *Usage          `json:"usage"`
	StopReason   string          `json:"stop_reason"`
	Error        json.RawMessage `json:"error"`
}

// wireDelta is the union of a content_block_delta's delta and a
// message_delta's delta.
type wireDelta struct {
	Delta
	StopReason string `json:"stop_reason"`
	Usage      *Usage `json:"usage"`
}

// build decodes the data of a dispatched event. Data that is not JSON is
// an error for the types whose payload matters, and kept raw otherwise.
func (r *EventReader) build(name, id string, data []byte, line int) (Event, error) {
	ev := Event{Type: name, ID: id, Data: data}
	var w wireEvent
	jsonErr := errors.New("no data")
	if len(bytes.TrimSpace(data)) > 0 {
		jsonErr = json.Unmarshal(data, &w)
	}
	if ev.Type == "" || ev.Type == "message" {
		if jsonErr == nil && w.Type != "" {
			ev.Type = w.Type
		} else if ev.Type == "" {
			ev.Type = "message"
		}
	}
	switch ev.Type {
	case EventError:
		if jsonErr != nil { // a plain-text error is still an error
			ev.Error = &ErrorDetail{Message: truncate(collapse(strings.ToValidUTF8(string(data), "\uFFFD")), maxErrorMessage)}
			return ev, nil
		}
	case EventContentBlockStart, EventContentBlockDelta, EventContentBlockStop,
		EventContentBlockSynthetic, EventMessageStart, EventMessageDelta:
		if jsonErr != nil {
			return Event{}, fmt.Errorf("sse: line %d: %s event: data is not a JSON object: %w; data starts %s", line, ev.Type, jsonErr, snippet(data))
		}
	default:
		return ev, nil // ping, message_stop, done and unknown types: no payload needed
	}
	ev.BlockID = string(w.BlockID)
	if w.Index != nil {
		n := int(*w.Index)
		ev.Index = &n
	}
	switch ev.Type {
	case EventContentBlockStart:
		ev.Block = w.ContentBlock
	case EventContentBlockSynthetic:
		ev.Block = cmp.Or(w.Block, w.ContentBlock)
	case EventContentBlockDelta:
		if w.Delta != nil {
			d := w.Delta.Delta
			ev.Delta = &d
		}
	case EventMessageStart:
		ev.Message = w.Message
		if w.Message != nil && w.Message.Usage != nil {
			ev.Usage = w.Message.Usage
		}
	case EventMessageDelta:
		ev.StopReason, ev.Usage = w.StopReason, w.Usage
		if d := w.Delta; d != nil {
			ev.StopReason = cmp.Or(d.StopReason, w.StopReason)
			ev.Usage = cmp.Or(d.Usage, w.Usage)
		}
	case EventError:
		ev.Error = decodeStreamError(w.Error, data)
	}
	return ev, nil
}

// decodeStreamError reads {"error": {"type", "message"}}, {"error": "..."}
// or a top-level message.
func decodeStreamError(raw json.RawMessage, data []byte) *ErrorDetail {
	var d ErrorDetail
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &d); err != nil {
			var s string
			if json.Unmarshal(raw, &s) == nil {
				d.Message = s
			}
		}
	}
	if d.Message == "" {
		var top struct {
			Message string `json:"message"`
		}
		_ = json.Unmarshal(data, &top)
		d.Message = top.Message
	}
	d.Message = truncate(d.Message, maxErrorMessage)
	d.Type = truncate(d.Type, 128)
	return &d
}

// flexString decodes a JSON string or number as a string (an id that a
// server might send as a number); null leaves it empty.
type flexString string

// UnmarshalJSON implements json.Unmarshaler.
func (f *flexString) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || string(b) == "null" {
		return nil
	}
	if b[0] == '"' {
		if len(b) >= 2 && b[len(b)-1] == '"' && bytes.IndexByte(b, '\\') < 0 {
			*f = flexString(b[1 : len(b)-1]) // the common case: no escapes
			return nil
		}
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*f = flexString(s)
		return nil
	}
	if _, err := strconv.ParseFloat(string(b), 64); err != nil {
		return fmt.Errorf("block_id: %s is neither a string nor a number", truncate(string(b), 40))
	}
	*f = flexString(b)
	return nil
}

// errStreamTooLarge is returned by countingReader past its maximum.
var errStreamTooLarge = errors.New("stream too large")

// countingReader fails once more than max bytes have been read.
type countingReader struct {
	r   io.Reader
	n   int64
	max int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	if c.n >= c.max {
		// Read one byte to tell an exact-size stream from a longer one.
		var one [1]byte
		n, err := c.r.Read(one[:])
		if n > 0 {
			return 0, errStreamTooLarge
		}
		return 0, err
	}
	if rest := c.max - c.n; int64(len(p)) > rest {
		p = p[:rest]
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
