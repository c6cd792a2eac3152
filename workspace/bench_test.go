package workspace

import (
	"bytes"
	"fmt"
	"testing"
)

// benchStream is a stream of n text deltas spread over 3 blocks, with a ping
// every 50 events, as a long answer would arrive.
func benchStream(n int) []byte {
	var b bytes.Buffer
	b.WriteString("event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_b\",\"content\":[]}}\n\n")
	for i := range n {
		if i%50 == 0 {
			b.WriteString("event: ping\ndata: {\"type\":\"ping\"}\n\n")
		}
		fmt.Fprintf(&b, "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"block_id\":\"blk_%d\",\"delta\":{\"type\":\"text_delta\",\"text\":\"token %d of the answer \"}}\n\n", i%3, i)
	}
	b.WriteString("event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"usage\":{\"input_tokens\":900,\"output_tokens\":4000}}}\n\n")
	b.WriteString("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n")
	return b.Bytes()
}

func BenchmarkReadStream(b *testing.B) {
	in := benchStream(4000)
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		res, err := ReadStream(bytes.NewReader(in), Limits{}, nil)
		if err != nil || !res.Completed {
			b.Fatal(err)
		}
	}
}

func BenchmarkEventReader(b *testing.B) {
	in := benchStream(4000)
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		r := NewEventReader(bytes.NewReader(in), Limits{})
		for {
			if _, err := r.Next(); err != nil {
				break
			}
		}
	}
}

func BenchmarkDecodeErrorBody(b *testing.B) {
	body := []byte(`{"valid":false,"message":"invalid request","errors":["messages[0].content must be an array of content blocks","temperature must be between 0 and 2"]}`)
	b.ReportAllocs()
	for b.Loop() {
		decodeErrorBody(body, "application/json")
	}
}
