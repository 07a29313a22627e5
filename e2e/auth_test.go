package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"
)

func b64url(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// jwkJSON is the JWK of an RSA or EC P-256 public key.
func jwkJSON(t *testing.T, kid string, pub any) map[string]any {
	t.Helper()
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return map[string]any{"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
			"n": b64url(k.N.Bytes()), "e": b64url(big.NewInt(int64(k.E)).Bytes())}
	case *ecdsa.PublicKey:
		raw, err := k.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		return map[string]any{"kty": "EC", "kid": kid, "crv": "P-256", "x": b64url(raw[1:33]), "y": b64url(raw[33:])}
	}
	t.Fatalf("jwkJSON: %T", pub)
	return nil
}

// writeJWKS replaces path atomically with a JWKS of keys.
func writeJWKS(t *testing.T, path string, keys ...map[string]any) {
	t.Helper()
	b, err := json.Marshal(map[string]any{"keys": keys})
	if err != nil {
		t.Fatal(err)
	}
	writeAtomic(t, path, b)
}

func writeAtomic(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path+".tmp", b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}

func signJWT(t *testing.T, m jwt.SigningMethod, key any, kid string, cl jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, cl)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// handshake dials with tok and returns the HTTP status of a refusal, or 101
// once the welcome frame has arrived.
func handshake(t *testing.T, ctx context.Context, addr, tok string) int {
	t.Helper()
	conn, resp, err := websocket.Dial(ctx, "ws://"+addr+"/ws", &websocket.DialOptions{
		HTTPHeader: map[string][]string{"Authorization": {"Bearer " + tok}}})
	if err != nil {
		if resp == nil {
			t.Fatalf("dial: %v", err)
		}
		return resp.StatusCode
	}
	defer conn.CloseNow()
	if _, b, err := conn.Read(ctx); err != nil || !strings.Contains(string(b), `"welcome"`) {
		t.Fatalf("no welcome: %v %s", err, b)
	}
	return 101
}

// SIGHUP re-reads --jwks-file: the old key stops working, the new one
// works, a broken file keeps the keys in use, and no key reaches the logs.
func TestJWKSReloadOnSIGHUP(t *testing.T) {
	ctx := testContext(t, 60*time.Second)
	oldKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	newKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "jwks.json")
	writeJWKS(t, path, jwkJSON(t, "old", &oldKey.PublicKey))
	s := startServer(t, ctx, "--addr", "127.0.0.1:0", "--auth", "jwt", "--jwks-file", path)

	cl := jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix()}
	oldTok := signJWT(t, jwt.SigningMethodES256, oldKey, "old", cl)
	newTok := signJWT(t, jwt.SigningMethodRS256, newKey, "new", cl)
	if got := handshake(t, ctx, s.Addr, oldTok); got != 101 {
		t.Fatalf("old key before reload: %d", got)
	}
	if got := handshake(t, ctx, s.Addr, newTok); got != 401 {
		t.Fatalf("new key before reload: %d, want 401", got)
	}

	writeJWKS(t, path, jwkJSON(t, "new", &newKey.PublicKey))
	if err := s.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.output.waitEntry(ctx, func(e map[string]any) bool { return e["msg"] == "keys reloaded" && e["keys"] == 1.0 }); !ok {
		t.Fatal(`no "keys reloaded" line with keys=1`)
	}
	if got := handshake(t, ctx, s.Addr, oldTok); got != 401 {
		t.Errorf("old key after reload: %d, want 401", got)
	}
	if got := handshake(t, ctx, s.Addr, newTok); got != 101 {
		t.Errorf("new key after reload: %d, want accepted", got)
	}

	writeAtomic(t, path, []byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`))
	if err := s.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.output.waitEntry(ctx, func(e map[string]any) bool { return e["msg"] == "key reload failed; keeping the current keys" }); !ok {
		t.Fatal("no line about the failed reload")
	}
	if got := handshake(t, ctx, s.Addr, newTok); got != 101 {
		t.Errorf("new key after a failed reload: %d, want accepted", got)
	}
	logs := s.output.String()
	for _, leak := range []string{b64url(newKey.N.Bytes())[:24], oldTok, newTok, "c2VjcmV0"} {
		if strings.Contains(logs, leak) {
			t.Errorf("server output contains %q", leak)
		}
	}
}

// A connection whose token expires while it is open is closed with 1008
// token_expired, no earlier than exp.
func TestTokenExpiryClosesConnection(t *testing.T) {
	ctx := testContext(t, 60*time.Second)
	const secret = "expiry-secret-4c2a"
	s := startServer(t, ctx, "--addr", "127.0.0.1:0", "--auth", "jwt", "--jwt-secret", secret,
		"--jwt-leeway", "0s", "--ping-interval", "1s", "--pong-timeout", "1s")
	out, err := exec.CommandContext(ctx, binary(t), "token", "--user", "alice", "--ttl", "3s", "--jwt-secret", secret).Output()
	if err != nil {
		t.Fatalf("token: %v", err)
	}
	tok := strings.TrimSpace(string(out))
	var cl struct {
		Exp int64 `json:"exp"`
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[1])
	if err != nil || json.Unmarshal(payload, &cl) != nil || cl.Exp == 0 {
		t.Fatalf("token payload %s: %v", payload, err)
	}
	c, err := dialClient(ctx, "ws://"+s.Addr+"/ws?token="+tok)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	if _, err := c.expect(ctx, "welcome", func(f frame) bool { return f.typ() == "welcome" }); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		t.Fatal("connection still open 10s after the token was minted")
	}
	closedAt := time.Now()
	var ce websocket.CloseError
	if !errors.As(c.err, &ce) || ce.Code != websocket.StatusPolicyViolation || ce.Reason != "token_expired" {
		t.Fatalf("closed with %v, want 1008 token_expired", c.err)
	}
	if exp := time.Unix(cl.Exp, 0); closedAt.Before(exp) {
		t.Errorf("closed at %v, before exp %v", closedAt, exp)
	}
	if handshake := handshakeStatus(ctx, s.Addr, tok); handshake != 401 {
		t.Errorf("expired token handshake: %d, want 401", handshake)
	}
}

func handshakeStatus(ctx context.Context, addr, tok string) int {
	conn, resp, err := websocket.Dial(ctx, "ws://"+addr+"/ws?token="+tok, nil)
	if err == nil {
		conn.CloseNow()
		return 101
	}
	if resp == nil {
		return 0
	}
	return resp.StatusCode
}

// `switchboard token` checks --rooms with the server's parser, and its
// --issuer/--audience match the server's --jwt-issuer/--jwt-audience.
func TestTokenCommandRoomsIssuerAudience(t *testing.T) {
	ctx := testContext(t, 60*time.Second)
	const secret = "token-cmd-secret-19ad"
	for rooms, want := range map[string]string{
		"chat:*,a b":             `--rooms entry "a b"`,
		"chat:**":                `--rooms entry "chat:**": '*' is only allowed once, at the end`,
		"chat:*,,news":           "--rooms entry 2 is empty",
		strings.Repeat("x", 129): "longer than 128 bytes",
	} {
		out, err := exec.CommandContext(ctx, binary(t), "token", "--user", "alice", "--jwt-secret", secret, "--rooms", rooms).CombinedOutput()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(string(out), want) {
			t.Errorf("--rooms %q: err %v, output %q; want exit 1 and %q", rooms, err, out, want)
		}
	}

	s := startServer(t, ctx, "--addr", "127.0.0.1:0", "--auth", "jwt", "--jwt-secret", secret,
		"--jwt-issuer", "https://id.example", "--jwt-audience", "switchboard")
	mint := func(extra ...string) string {
		args := append([]string{"token", "--user", "alice", "--ttl", "1h", "--jwt-secret", secret}, extra...)
		out, err := exec.CommandContext(ctx, binary(t), args...).Output()
		if err != nil {
			t.Fatalf("token %v: %v", extra, err)
		}
		return strings.TrimSpace(string(out))
	}
	if got := handshakeStatus(ctx, s.Addr, mint()); got != 401 {
		t.Errorf("token without iss/aud: %d, want 401", got)
	}
	if got := handshakeStatus(ctx, s.Addr, mint("--issuer", "https://id.example", "--audience", "other")); got != 401 {
		t.Errorf("token with the wrong aud: %d, want 401", got)
	}
	tok := mint("--issuer", "https://id.example", "--audience", "switchboard", "--rooms", "chat:*, news")
	c, err := dialClient(ctx, "ws://"+s.Addr+"/ws?token="+tok)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	for room, ok := range map[string]bool{"chat:lobby": true, "news": true, "newsroom": false, "user:alice": true, "user:bob": false} {
		_, err := c.request(ctx, map[string]any{"type": "join", "room": room, "id": "j-" + room})
		if (err == nil) != ok {
			t.Errorf("join %s: %v, want allowed=%v", room, err, ok)
		}
	}
}
