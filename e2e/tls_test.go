package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// selfSignedCert writes a self-signed ECDSA P-256 certificate for
// 127.0.0.1 and its key into dir, and returns their paths and a pool that
// trusts the certificate.
func selfSignedCert(t *testing.T, dir string) (certPath, keyPath string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "switchboard e2e"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certPath, keyPath, pool
}

// startTLSServer is startServer for a node serving TLS: /healthz is polled
// over https with client.
func startTLSServer(t *testing.T, ctx context.Context, client *http.Client, args ...string) *server {
	t.Helper()
	s, listening := launchServer(t, ctx, args...)
	if listening["tls"] != true {
		t.Errorf("listening line says tls=%v", listening["tls"])
	}
	s.waitHealthyAt(t, ctx, client, "https://"+s.Addr+"/healthz")
	return s
}

// dialWith is dialClient with DialOptions of the caller's choosing.
func dialWith(ctx context.Context, url string, opts *websocket.DialOptions) (*wsClient, error) {
	conn, resp, err := websocket.Dial(ctx, url, opts)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("dial: %w (HTTP %s)", err, resp.Status)
		}
		return nil, fmt.Errorf("dial: %w", err)
	}
	c := &wsClient{conn: conn, frames: make(chan frame, 1024), done: make(chan struct{}), autoPong: true}
	go c.readLoop()
	return c, nil
}

// --tls-cert/--tls-key serve wss: a client trusting the certificate
// completes welcome, join and publish; one that does not is refused.
func TestTLSRoundTrip(t *testing.T) {
	ctx := testContext(t, 60*time.Second)
	certPath, keyPath, pool := selfSignedCert(t, t.TempDir())
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	t.Cleanup(client.CloseIdleConnections)
	s := startTLSServer(t, ctx, client, "--addr", "127.0.0.1:0", "--tls-cert", certPath, "--tls-key", keyPath)

	if _, _, err := websocket.Dial(ctx, "wss://"+s.Addr+"/ws?user=mallory", nil); err == nil ||
		!strings.Contains(err.Error(), "certificate") {
		t.Fatalf("a client not trusting the certificate connected (err %v)", err)
	}

	c, err := dialWith(ctx, "wss://"+s.Addr+"/ws?user=alice",
		&websocket.DialOptions{HTTPClient: client, Subprotocols: []string{"switchboard.v1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	if c.conn.Subprotocol() != "switchboard.v1" {
		t.Errorf("subprotocol %q", c.conn.Subprotocol())
	}
	w, err := c.expect(ctx, "welcome", func(f frame) bool { return f.typ() == "welcome" })
	if err != nil {
		t.Fatal(err)
	}
	if w.str("user") != "alice" {
		t.Errorf("welcome %s", w.Raw)
	}
	if _, err := c.request(ctx, map[string]any{"type": "join", "room": "tls:room", "id": "j"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.request(ctx, map[string]any{"type": "publish", "room": "tls:room", "data": "over-wss", "id": "p"}); err != nil {
		t.Fatal(err)
	}
	m, err := c.expectSeen(ctx, "message", func(f frame) bool { return f.typ() == "message" })
	if err != nil {
		t.Fatal(err)
	}
	if m.str("room") != "tls:room" || m.str("from") != "alice" || m.Msg["data"] != "over-wss" {
		t.Errorf("message %s", m.Raw)
	}
}

// The server refuses to start with only half of the TLS pair, and says so.
func TestTLSNeedsCertAndKey(t *testing.T) {
	ctx := testContext(t, 30*time.Second)
	for _, args := range [][]string{
		{"serve", "--addr", "127.0.0.1:0", "--tls-cert", "cert.pem"},
		{"serve", "--addr", "127.0.0.1:0", "--tls-key", "key.pem"},
	} {
		out, err := exec.CommandContext(ctx, binary(t), args...).CombinedOutput()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() == 0 {
			t.Fatalf("%v: started (err %v); output:\n%s", args, err, out)
		}
		if !strings.Contains(string(out), "--tls-cert and --tls-key must be given together") {
			t.Errorf("%v: refusal does not say why:\n%s", args, out)
		}
	}
}

// expectSeen is expect that first looks at the frames already skipped
// (a message may overtake the ack of the publish that caused it).
func (c *wsClient) expectSeen(ctx context.Context, desc string, match func(frame) bool) (frame, error) {
	c.mu.Lock()
	for _, f := range c.seen {
		if match(f) {
			c.mu.Unlock()
			return f, nil
		}
	}
	c.mu.Unlock()
	return c.expect(ctx, desc, match)
}
