package e2e

import (
	"testing"
	"time"
)

// TestNodeClient runs node/client.test.mjs: the page's JavaScript client
// (web/static/switchboard.js) in Node with the npm package ws, against the
// real binary, which the script stops, restarts and freezes through the
// control endpoint of restartableServer. Rooms h:* keep history (in memory,
// so a restart starts a new epoch) for the resume tests.
func TestNodeClient(t *testing.T) {
	ctx := testContext(t, 4*time.Minute)
	nodeBin, dir := nodeTools(t, ctx, "ws")
	const apiKey = "e2e-node-client-key"
	rs := newRestartableServer(t, ctx, "--auth", "none",
		"--ping-interval", "1s", "--pong-timeout", "1s",
		"--max-conns-per-user", "1", "--per-user-policy", "evict-oldest",
		"--api-key", apiKey, "--history-rooms", "h:*")
	control := rs.serveControl(t)
	runNodeTests(t, ctx, nodeBin, dir, "client.test.mjs", 2*time.Minute,
		"SWITCHBOARD_URL="+rs.URL(), "SWITCHBOARD_CONTROL="+control, "SWITCHBOARD_API_KEY="+apiKey)
}
