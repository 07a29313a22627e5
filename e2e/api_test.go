package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/client"
)

// apiCall is what curl would do against the running binary.
func apiCall(t *testing.T, ctx context.Context, method, url, key, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	var m map[string]any
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s %s answered %d %q, not a JSON object", method, url, resp.StatusCode, b)
	}
	return resp.StatusCode, m
}

// metricValue reads one sample line of the text exposition.
func metricValue(t *testing.T, text, series string) float64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("/metrics has no %s", series)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestBackendAPIEndToEnd(t *testing.T) {
	ctx := testContext(t, 60*time.Second)
	s := startServer(t, ctx, "--addr=127.0.0.1:0", "--api-key=k1", "--api-key", "k2", "--node-id=e2e-node")
	base := "http://" + s.Addr

	c := joinedGo(t, ctx, s, "alice", "r")

	code, ans := apiCall(t, ctx, "POST", base+"/api/publish", "k2", `{"room":"r","data":{"hello":"from the backend"}}`)
	if code != 200 || ans["id"] == "" {
		t.Fatalf("publish: %d %v", code, ans)
	}
	msg, err := c.waitMsg(ctx, "the published message", func(m client.Message) bool { return m.Room == "r" })
	if err != nil {
		t.Fatal(err)
	}
	if msg.ID != ans["id"] || msg.From != "server" || string(msg.Data) != `{"hello":"from the backend"}` {
		t.Errorf("client got %+v, want message %v from server", msg, ans["id"])
	}

	code, ans = apiCall(t, ctx, "GET", base+"/api/presence?room=r", "k1", "")
	if users, _ := ans["users"].([]any); code != 200 || len(users) != 1 || users[0] != "alice" {
		t.Errorf("presence: %d %v", code, ans)
	}
	code, ans = apiCall(t, ctx, "GET", base+"/api/stats", "wrong-key", "")
	if code != 401 || ans["error"] != "unauthorized" {
		t.Errorf("wrong key: %d %v", code, ans)
	}
	if strings.Contains(s.output.String(), "wrong-key") {
		t.Error("the server logged the wrong key")
	}

	// Metrics moved with the traffic above.
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	text := string(b)
	for series, min := range map[string]float64{
		`switchboard_connections{node="e2e-node"}`:                                   1,
		`switchboard_connections_opened_total{node="e2e-node"}`:                      1,
		`switchboard_messages_in_total{node="e2e-node",type="join"}`:                 1,
		`switchboard_deliveries_total{node="e2e-node"}`:                              1,
		`switchboard_api_unauthorized_total{node="e2e-node"}`:                        1,
		`switchboard_api_requests_total{code="200",node="e2e-node",route="publish"}`: 1,
	} {
		if v := metricValue(t, text, series); v < min {
			t.Errorf("%s = %v, want at least %v", series, v, min)
		}
	}

	code, ans = apiCall(t, ctx, "POST", base+"/api/disconnect", "k1", `{"user":"alice"}`)
	if code != 200 || ans["user"] != "alice" {
		t.Fatalf("disconnect: %d %v", code, ans)
	}
	if err := c.waitStopped(ctx); closeCode(err) != 4003 {
		t.Errorf("the client stopped with %v, want 4003 (and no reconnect)", err)
	}
}

func TestBackendAPIOffByDefault(t *testing.T) {
	ctx := testContext(t, 30*time.Second)
	s := startServer(t, ctx, "--addr=127.0.0.1:0")
	code, ans := apiCall(t, ctx, "POST", "http://"+s.Addr+"/api/publish", "k", `{"broadcast":true,"data":1}`)
	if msg, _ := ans["message"].(string); code != 404 || ans["error"] != "not_found" || !strings.Contains(msg, "--api-key") {
		t.Errorf("API without keys: %d %v", code, ans)
	}
}
