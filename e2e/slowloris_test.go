package e2e

import (
	"io"
	"net"
	"testing"
	"time"
)

// A client that opens a socket and dribbles an incomplete request is cut
// after --handshake-timeout, while a regular client connects as usual.
func TestSlowHandshakeIsCut(t *testing.T) {
	ctx := testContext(t, 60*time.Second)
	s := startServer(t, ctx, "--addr", "127.0.0.1:0", "--handshake-timeout", "1s")
	idle, err := net.Dial("tcp", s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	if _, err := idle.Write([]byte("GET /ws?user=loris HTTP/1.1\r\nHost: x\r\n")); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_ = idle.SetReadDeadline(time.Now().Add(20 * time.Second))
	n, err := io.Copy(io.Discard, idle) // returns when the server closes the socket
	if err != nil {
		t.Fatalf("socket not closed by the server: %v (after %d bytes)", err, n)
	}
	if held := time.Since(start); held < 900*time.Millisecond {
		t.Fatalf("cut after %v, before the handshake timeout", held)
	}
	c, err := dialClient(ctx, "ws://"+s.Addr+"/ws?user=regular")
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	if _, err := c.expect(ctx, "welcome", func(f frame) bool { return f.typ() == "welcome" }); err != nil {
		t.Fatal(err)
	}
}
