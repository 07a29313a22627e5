package e2e

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// chromiumOrSkip returns the chromium to drive, failing (or skipping with
// SWITCHBOARD_SKIP_BROWSER=1) when there is none, as TestBrowser does.
func chromiumOrSkip(t *testing.T) string {
	t.Helper()
	chromium := os.Getenv("SWITCHBOARD_CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	if _, err := os.Stat(chromium); err != nil {
		if os.Getenv("SWITCHBOARD_SKIP_BROWSER") == "1" {
			t.Skipf("browser tests skipped (SWITCHBOARD_SKIP_BROWSER=1); %s: %v", chromium, err)
		}
		t.Fatalf("browser tests need chromium at %s (%v): run scripts/browser-setup.sh as root, "+
			"or set SWITCHBOARD_SKIP_BROWSER=1 to skip them", chromium, err)
	}
	return chromium
}

// TestAdminDashboardInBrowser runs node/admin.test.mjs: the admin
// dashboard in Debian's chromium (playwright-core) against the real
// binary, with real WebSocket clients (npm ws) making the traffic it must
// show. One node runs alone with small queues (so that a client that stops
// reading is cut off quickly); two more share a Redis, for the per-node
// view. The screenshot of the dashboard under traffic is docs/admin.png.
func TestAdminDashboardInBrowser(t *testing.T) {
	chromium := chromiumOrSkip(t)
	if c, err := net.DialTimeout("tcp", "127.0.0.1:6379", time.Second); err != nil {
		t.Fatalf("Redis is not reachable at 127.0.0.1:6379 (scripts/test.sh starts it): %v", err)
	} else {
		_ = c.Close()
	}
	shots := os.Getenv("SWITCHBOARD_SCREENSHOTS")
	if shots == "" {
		shots = filepath.Join(os.TempDir(), "switchboard-screenshots")
	}
	ctx := testContext(t, 4*time.Minute)
	nodeBin, dir := nodeTools(t, ctx, "playwright-core", "ws")
	const key = "e2e-admin-key"
	solo := startServer(t, ctx, "--addr=127.0.0.1:0", "--auth=none", "--node-id=solo", "--admin", "--admin-key="+key,
		"--rate=1000", "--burst=1000", "--queue-bytes=65536", "--write-timeout=1s", "--max-conns-per-user=4")
	sfx := fmt.Sprintf("%x", rand.Uint64())
	cluster := []string{"--addr=127.0.0.1:0", "--auth=none", "--broker=redis", "--cluster-name=admin" + sfx,
		"--admin", "--admin-key=" + key, "--presence-ttl=3s"}
	a := startServer(t, ctx, append(cluster, "--node-id=node-a-"+sfx)...)
	b := startServer(t, ctx, append(cluster, "--node-id=node-b-"+sfx)...)
	runNodeTests(t, ctx, nodeBin, dir, "admin.test.mjs", 3*time.Minute,
		"SWITCHBOARD_URL=http://"+solo.Addr, "SWITCHBOARD_ADMIN_KEY="+key,
		"SWITCHBOARD_NODE_A=http://"+a.Addr, "SWITCHBOARD_NODE_B=http://"+b.Addr,
		"SWITCHBOARD_NODE_A_ID=node-a-"+sfx, "SWITCHBOARD_NODE_B_ID=node-b-"+sfx,
		"SWITCHBOARD_SCREENSHOTS="+shots, "CHROMIUM="+chromium)
	t.Logf("screenshots in %s", shots)
}
