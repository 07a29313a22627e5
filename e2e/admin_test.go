package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"testing"
	"time"
)

// The dashboard behind nginx (deploy/nginx.conf), in front of two nodes
// on Redis: a session signed by whichever node took the login is accepted
// by the other, and the event stream passes through nginx as it is
// written, not when a buffer fills.
func TestAdminBehindNginx(t *testing.T) {
	needBroker(t, "redis")
	ctx := testContext(t, 90*time.Second)
	cluster := fmt.Sprintf("c%x", rand.Uint64())
	var nodes []*server
	for i, id := range []string{"a", "b"} {
		nodes = append(nodes, startServer(t, ctx, append(clusterArgs("redis", cluster, 2+i), "--node-id="+id, "--admin")...))
	}
	front := "http://" + startNginx(t, ctx, nodes...)

	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	browser := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	req, _ := http.NewRequestWithContext(ctx, "POST", front+"/admin/login", nil)
	req.Header.Set("Authorization", "Bearer k") // the API key: no --admin-key given
	resp, err := browser.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("login through nginx: %d", resp.StatusCode)
	}

	// least_conn with nothing open sends requests round the nodes: both
	// answer the one session.
	served := map[string]bool{}
	for i := 0; i < 20 && len(served) < 2; i++ {
		req, _ := http.NewRequestWithContext(ctx, "GET", front+"/admin/api/snapshot", nil)
		resp, err := browser.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var s struct{ Node string }
		err = json.NewDecoder(resp.Body).Decode(&s)
		_ = resp.Body.Close()
		if resp.StatusCode != 200 || err != nil {
			t.Fatalf("snapshot through nginx: %d %v", resp.StatusCode, err)
		}
		served[s.Node] = true
	}
	if !served["a"] || !served["b"] {
		t.Fatalf("the session was answered by %v, want both nodes", served)
	}

	// Each event arrives within a moment of the second it describes, and
	// names both nodes.
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, _ = http.NewRequestWithContext(sctx, "GET", front+"/admin/stream", nil)
	stream := &http.Client{Jar: jar} // no timeout: the body streams
	resp, err = stream.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream through nginx: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	events, both := 0, false
	for events < 4 && sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		var s struct {
			TS    int64
			Nodes []struct{ Node string }
		}
		if err := json.Unmarshal([]byte(line), &s); err != nil {
			t.Fatalf("event %q: %v", line, err)
		}
		events++
		if events > 1 { // the first is the newest snapshot, up to a second old
			if late := time.Since(time.UnixMilli(s.TS)); late > 2*time.Second {
				t.Fatalf("event %d arrived %v after its snapshot: buffered on the way", events, late)
			}
		}
		both = both || len(s.Nodes) == 2
	}
	if events < 4 {
		t.Fatalf("the stream ended after %d events: %v", events, sc.Err())
	}
	if !both {
		t.Error("no event showed both nodes")
	}
}
