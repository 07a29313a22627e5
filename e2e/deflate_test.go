package e2e

import (
	"testing"
	"time"
)

// TestDeflateWithNodeWS runs node/deflate.test.mjs: the npm package ws,
// with permessage-deflate, against the real binary with --compression,
// through a tap that sees RSV1 on the wire. It reproduces the case matrix
// of Autobahn|Testsuite's sections 12 and 13 (see the header of that file).
func TestDeflateWithNodeWS(t *testing.T) {
	ctx := testContext(t, 6*time.Minute)
	nodeBin, dir := nodeTools(t, ctx, "ws")
	srv := startServer(t, ctx, "--addr", "127.0.0.1:0", "--auth", "none", "--compression",
		"--max-message-bytes", "262144", "--rate", "100000", "--burst", "100000", "--ping-interval", "1h")
	runNodeTests(t, ctx, nodeBin, dir, "deflate.test.mjs", 5*time.Minute, "SWITCHBOARD_URL=ws://"+srv.Addr)
}

// TestBrowserCompression runs node/browser-deflate.test.mjs: chromium's own
// WebSocket negotiates permessage-deflate with the real binary and
// exchanges compressed messages both ways (see the header of that file).
// Like TestBrowser it fails without chromium unless SWITCHBOARD_SKIP_BROWSER=1.
func TestBrowserCompression(t *testing.T) {
	chromium := chromiumOrSkip(t)
	ctx := testContext(t, 3*time.Minute)
	nodeBin, dir := nodeTools(t, ctx, "playwright-core", "ws")
	srv := startServer(t, ctx, "--addr", "127.0.0.1:0", "--auth", "none", "--compression",
		"--allowed-origins", "127.0.0.1")
	runNodeTests(t, ctx, nodeBin, dir, "browser-deflate.test.mjs", 2*time.Minute,
		"SWITCHBOARD_URL=ws://"+srv.Addr, "CHROMIUM="+chromium)
}
