package e2e

import (
	"bytes"
	"net/http"
	"testing"
	"time"
)

// A body past the API's limit is refused by the HTTP engine itself, before
// any handler (and before the API key check) could have it buffered; the
// node stays healthy.
func TestOversizedBodyIsRefusedBeforeHandlers(t *testing.T) {
	ctx := testContext(t, 30*time.Second)
	s := startServer(t, ctx, "--addr=127.0.0.1:0", "--api-key=k")
	body := bytes.Repeat([]byte("x"), 3<<20)
	resp, err := http.Post("http://"+s.Addr+"/api/publish", "application/json", bytes.NewReader(body))
	if err == nil {
		_ = resp.Body.Close()
		if resp.StatusCode < 400 {
			t.Fatalf("a 3 MiB body was accepted: %d", resp.StatusCode)
		}
	}
	s.waitHealthy(t, ctx)
}
