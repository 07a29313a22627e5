package client

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/switchboardhq/switchboard"
)

// BenchmarkDecodeMessage is the client's own work per message received:
// decoding the frame (100 B of data, as the bench's) into a Message.
func BenchmarkDecodeMessage(b *testing.B) {
	raw := []byte(`{"type":"message","room":"bench","from":"server","data":{"bench_t":1765100000000000000,"seq":12345,"pad":"` +
		strings.Repeat("x", 48) + `"},"id":"0f8fad5bd9cb469f","offset":123456,"ts":1765100000000}`)
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		var f frame
		if err := json.Unmarshal(raw, &f); err != nil {
			b.Fatal(err)
		}
		_ = f.message(false)
	}
}

// BenchmarkReceive is one message from a backend publish on a real hub to
// the application's hand, through one client: the hub's delivery, the
// socket, the client's read loop and its Messages channel.
func BenchmarkReceive(b *testing.B) {
	hub, url := startHub(b, switchboard.Options{})
	c, err := Dial(context.Background(), url+"?user=alice", nil)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Join(context.Background(), "r"); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		if _, err := hub.Publish(ctx, "r", json.RawMessage(strconv.Itoa(i))); err != nil {
			b.Fatal(err)
		}
		<-c.Messages()
	}
}
