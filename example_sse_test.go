package switchboard_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/switchboardhq/switchboard"
)

// Serve the event-stream fallback beside the WebSocket endpoint. A stream
// may join a room from its query; its requests go as POSTs with the
// session from its welcome, and their answers come on the stream.
func ExampleHub_SSEHandler() {
	hub, err := switchboard.New(switchboard.Options{Logger: quietLogger()})
	if err != nil {
		panic(err)
	}
	defer hub.Close()
	mux := http.NewServeMux()
	mux.Handle("/ws", hub.Handler())
	mux.Handle("/sse", hub.SSEHandler())
	srv := httptest.NewServer(mux)
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/sse?user=alice&room=news")
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	events := bufio.NewScanner(resp.Body)
	next := func() map[string]any {
		for events.Scan() {
			if data, ok := strings.CutPrefix(events.Text(), "data: "); ok {
				var f map[string]any
				_ = json.Unmarshal([]byte(data), &f)
				return f
			}
		}
		return nil
	}
	welcome := next()
	fmt.Println(welcome["type"], welcome["transport"])
	fmt.Println(next()["ref"]) // the query's join

	_, _ = hub.Publish(context.Background(), "news", json.RawMessage(`{"headline":"hello"}`))
	fmt.Println(next()["data"])

	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/sse", strings.NewReader(`{"type":"presence","room":"news"}`))
	req.Header.Set(switchboard.SessionHeader, welcome["session"].(string))
	post, err := http.DefaultClient.Do(req)
	if err != nil {
		panic(err)
	}
	post.Body.Close()
	fmt.Println(post.StatusCode, next()["users"])
	// Output:
	// welcome sse
	// sse-join-news
	// map[headline:hello]
	// 204 [alice]
}
