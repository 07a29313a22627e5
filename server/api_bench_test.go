package server

import "testing"

// BenchmarkAPIPublish is the server's own work for one POST /api/publish
// of a 100-byte message to a room nobody is in: the key check, the strict
// JSON decoding, the hub's publish and the answer, without the engine's
// HTTP parsing or any delivery. docs/performance.md divides it by the
// recipients of a fan-out to show the API's share per delivery.
func BenchmarkAPIPublish(b *testing.B) {
	srv, _ := testServer(b, "--auth=none", "--api-key=k")
	h := srv.Handler()
	body := `{"room":"bench","data":{"bench_t":1234567890123456789,"seq":12345,"pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}}`
	b.ReportAllocs()
	for b.Loop() {
		if rec := call(b, h, "POST", "/api/publish", "k", body); rec.Code != 200 {
			b.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	}
}
