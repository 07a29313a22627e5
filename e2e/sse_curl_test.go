package e2e

import (
	"context"
	"os/exec"
	"testing"
	"time"
)

// TestSSEWithCurl reads the event stream of the real binary with a plain
// `curl -N`, as an operator debugging a deployment would: the query joins
// a room, a backend publish arrives as an event, and since curl never
// answers the pings the server ends the stream with a close event (4000)
// after ping interval + pong timeout, and curl exits.
func TestSSEWithCurl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Fatalf("curl is needed (apt-get install curl; scripts/test.sh installs it): %v", err)
	}
	ctx := testContext(t, 60*time.Second)
	s := startServer(t, ctx, "--addr=127.0.0.1:0", "--api-key=k", "--ping-interval=1s", "--pong-timeout=1s",
		"--history-rooms=news")
	base := "http://" + s.Addr

	cmd := exec.CommandContext(ctx, curl, "-sSN", base+"/sse?user=ops&room=news")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	events := make(chan sseEvent, 64)
	go func() {
		if err := readEvents(out, events); err != nil {
			t.Errorf("curl's output: %v", err)
		}
	}()
	next := func() (name, id string, f map[string]any) {
		t.Helper()
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatal("curl's stream ended early")
			}
			return ev.name, ev.id, ev.frame
		case <-ctx.Done():
			t.Fatal("no event in time")
		}
		return
	}
	if _, _, f := next(); f["type"] != "welcome" || f["user"] != "ops" || f["transport"] != "sse" {
		t.Fatalf("first event %v, want the welcome", f)
	}
	_, joinID, ack := next()
	if ack["type"] != "ack" || ack["ref"] != "sse-join-news" || joinID != "0:"+ack["epoch"].(string) {
		t.Fatalf("second event %v (id %q), want the room's join ack with its position", ack, joinID)
	}
	opened := time.Now()
	if st, body := apiCall(t, ctx, "POST", base+"/api/publish", "k", `{"room":"news","data":{"headline":"hello"}}`); st != 200 {
		t.Fatalf("publish: %d %v", st, body)
	}
	sawPing := false
	for {
		name, id, f := next()
		switch {
		case name == "" && f["type"] == "message":
			if f["room"] != "news" || f["from"] != "server" || id != "1:"+ack["epoch"].(string) {
				t.Fatalf("message %v with id %q", f, id)
			}
		case name == "" && f["type"] == "ping":
			sawPing = true
		case name == "close":
			if f["code"] != float64(4000) || f["reason"] != "ping_timeout" || !sawPing {
				t.Fatalf("close %v (ping seen: %v), want 4000 ping_timeout after a ping", f, sawPing)
			}
			if took := time.Since(opened); took < time.Second {
				t.Fatalf("closed after %v, before the ping interval", took)
			}
			waitCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("curl exited with %v after the close event", err)
				}
			case <-waitCtx.Done():
				t.Fatal("curl still running after the close event: the server did not end the stream")
			}
			return
		default:
			t.Fatalf("unexpected event %q %v", name, f)
		}
	}
}
