package e2e

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestBrowser runs node/browser.test.mjs: the demo page in Debian's chromium,
// driven by playwright-core, two browser contexts as two users, against the
// real binary (see the header of that file). Without chromium it fails
// (run scripts/browser-setup.sh) unless SWITCHBOARD_SKIP_BROWSER=1.
func TestBrowser(t *testing.T) {
	chromium := os.Getenv("SWITCHBOARD_CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	if _, err := os.Stat(chromium); err != nil {
		if os.Getenv("SWITCHBOARD_SKIP_BROWSER") == "1" {
			t.Skipf("browser tests skipped (SWITCHBOARD_SKIP_BROWSER=1); %s: %v", chromium, err)
		}
		t.Fatalf("browser tests need chromium at %s (%v): run scripts/browser-setup.sh as root "+
			"(apt-get install chromium), or set SWITCHBOARD_SKIP_BROWSER=1 to skip them", chromium, err)
	}
	shots := os.Getenv("SWITCHBOARD_SCREENSHOTS")
	if shots == "" {
		shots = filepath.Join(os.TempDir(), "switchboard-screenshots")
	}
	ctx := testContext(t, 4*time.Minute)
	nodeBin, dir := nodeTools(t, ctx, "playwright-core")
	rs := newRestartableServer(t, ctx, "--auth", "none", "--ping-interval", "1s", "--pong-timeout", "1s")
	control := rs.serveControl(t)
	runNodeTests(t, ctx, nodeBin, dir, "browser.test.mjs", 3*time.Minute,
		"SWITCHBOARD_URL="+rs.URL(), "SWITCHBOARD_CONTROL="+control,
		"SWITCHBOARD_SCREENSHOTS="+shots, "CHROMIUM="+chromium)
	t.Logf("screenshots in %s", shots)
}
