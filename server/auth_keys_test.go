package server

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"log/slog"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/switchboardhq/switchboard/server/config"
)

func TestParseJWKS(t *testing.T) {
	testKeys(t)
	r1, e1 := jwkOf("r1", &rsaA.PublicKey), jwkOf("e1", &ecA.PublicKey)
	mod := func(m map[string]any, kv ...any) map[string]any {
		out := map[string]any{}
		for k, v := range m {
			out[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] == nil {
				delete(out, kv[i].(string))
			} else {
				out[kv[i].(string)] = kv[i+1]
			}
		}
		return out
	}
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		data []byte
		want string // error substring; "" means valid
		n    int
	}{
		{"rsa and ec", jwksJSON(r1, e1), "", 2},
		{"single key without kid", jwksJSON(jwkOf("", &ecA.PublicKey)), "", 1},
		{"alg and use present", jwksJSON(mod(r1, "alg", "RS256", "use", "sig"), mod(e1, "alg", "ES256")), "", 2},
		{"unknown members ignored", jwksJSON(mod(r1, "x5t", "abc", "key_ops", []string{"verify"})), "", 1},
		{"not JSON", []byte("{"), "not a JWKS", 0},
		{"array", []byte("[]"), "not a JWKS", 0},
		{"no keys member", []byte(`{"k":[]}`), `no "keys" array`, 0},
		{"empty set", jwksJSON(), "no keys", 0},
		{"key not an object", []byte(`{"keys":[1]}`), "key 0: not a JWK", 0},
		{"kid not a string", jwksJSON(mod(r1, "kid", 5)), "key 0: not a JWK", 0},
		{"missing kty", jwksJSON(mod(r1, "kty", nil)), `missing "kty"`, 0},
		{"unknown kty", jwksJSON(mod(r1, "kty", "oct")), `unsupported "kty"`, 0},
		{"OKP kty", jwksJSON(mod(e1, "kty", "OKP", "crv", "Ed25519")), `unsupported "kty"`, 0},
		{"unknown crv", jwksJSON(mod(e1, "crv", "P-384")), `"crv" must be "P-256"`, 0},
		{"missing crv", jwksJSON(mod(e1, "crv", nil)), `"crv" must be "P-256"`, 0},
		{"missing n", jwksJSON(mod(r1, "n", nil)), `missing "n"`, 0},
		{"missing e", jwksJSON(mod(r1, "e", nil)), `missing "e"`, 0},
		{"missing x", jwksJSON(mod(e1, "x", nil)), `missing "x"`, 0},
		{"missing y", jwksJSON(mod(e1, "y", nil)), `missing "y"`, 0},
		{"padded base64", jwksJSON(mod(r1, "e", "AQAB=")), `"e" is not unpadded base64url`, 0},
		{"std base64", jwksJSON(mod(e1, "x", strings.Repeat("+", 43))), `"x" is not unpadded base64url`, 0},
		{"short x", jwksJSON(mod(e1, "x", b64(make([]byte, 31)))), "32 bytes each", 0},
		{"point off curve", jwksJSON(mod(e1, "y", b64(bytes.Repeat([]byte{1}, 32)))), "not on curve", 0},
		{"even exponent", jwksJSON(mod(r1, "e", b64([]byte{1, 0, 0}))), "exponent", 0},
		{"huge exponent", jwksJSON(mod(r1, "e", b64([]byte{1, 0, 0, 0, 1}))), `"e" must be`, 0},
		{"small modulus", jwksJSON(jwkOf("s", &small.PublicKey)), "RSA key of 1024 bits", 0},
		{"private key", jwksJSON(mod(r1, "d", "AQAB")), "private key material", 0},
		{"use enc", jwksJSON(mod(r1, "use", "enc")), `"use" must be "sig"`, 0},
		{"alg mismatch", jwksJSON(mod(r1, "alg", "ES256")), `"alg" must be RS256`, 0},
		{"alg PS256", jwksJSON(mod(r1, "alg", "PS256")), `"alg" must be RS256`, 0},
		{"duplicate kid", jwksJSON(r1, mod(e1, "kid", "r1")), `duplicate kid "r1"`, 0},
		{"kid missing among several", jwksJSON(r1, mod(e1, "kid", nil)), "key 1 has no kid", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys, err := parseJWKS(tt.data)
			if tt.want == "" {
				if err != nil || len(keys) != tt.n {
					t.Fatalf("got %d keys, %v; want %d", len(keys), err, tt.n)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestParsePEMKeys(t *testing.T) {
	testKeys(t)
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, _ := x509.MarshalECPrivateKey(ecA)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "issuer"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	cert, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &ecA.PublicKey, ecA)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, alg, want string
		data            []byte
	}{
		{"RSA PKIX", "RS256", "", pkixPEM(t, &rsaA.PublicKey)},
		{"RSA PKCS1", "RS256", "", pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&rsaA.PublicKey)})},
		{"EC PKIX", "ES256", "", pkixPEM(t, &ecA.PublicKey)},
		{"certificate", "ES256", "", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert})},
		{"P-384", "", "not on curve P-256", pkixPEM(t, &p384.PublicKey)},
		{"private key", "", "give the public key only", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecDER})},
		{"not PEM", "", "no PEM block", []byte("hello")},
		{"garbage in block", "", "malformed public key", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{1, 2}})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys, err := parsePEMKeys(tt.data)
			if tt.want == "" {
				if err != nil || len(keys) != 1 || keys[0].alg != tt.alg {
					t.Fatalf("got %+v, %v; want one %s key", keys, err, tt.alg)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
		})
	}
}

// Reload swaps keys atomically while handshakes verify concurrently (run
// with -race); a failed reload keeps the keys in use.
func TestKeySetReload(t *testing.T) {
	testKeys(t)
	path := writeFile(t, "jwks.json", jwksJSON(jwkOf("a", &ecA.PublicKey)))
	a := mustAuth(t, authCfg(func(c *config.Config) { c.JWKSFile = path }))
	now := time.Now()
	oldTok := sign(t, jwt.SigningMethodES256, ecA, claimsAt(now), map[string]any{"kid": "a"})
	newTok := sign(t, jwt.SigningMethodRS256, rsaA, claimsAt(now), map[string]any{"kid": "b"})
	if _, err := a.verify(oldTok); err != nil {
		t.Fatal(err)
	}
	if _, err := a.verify(newTok); err == nil {
		t.Fatal("new key accepted before reload")
	}

	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
					_, _ = a.verify(oldTok)
				}
			}
		})
	}
	replaceFile(t, path, jwksJSON(jwkOf("b", &rsaA.PublicKey), jwkOf("c", &ecB.PublicKey)))
	n, err := a.keys.Reload()
	close(stop)
	wg.Wait()
	if err != nil || n != 2 {
		t.Fatalf("Reload = %d, %v; want 2 keys", n, err)
	}
	if _, err := a.verify(oldTok); err == nil {
		t.Error("old key still accepted after reload")
	}
	if _, err := a.verify(newTok); err != nil {
		t.Errorf("new key refused after reload: %v", err)
	}

	for name, data := range map[string][]byte{
		"garbage": []byte("not json"), "empty set": jwksJSON(), "private key": []byte(`{"keys":[{"kty":"EC","d":"x"}]}`),
	} {
		replaceFile(t, path, data)
		if _, err := a.keys.Reload(); err == nil || !strings.Contains(err.Error(), "--jwks-file "+path) {
			t.Errorf("%s: Reload error %v, want one naming the file", name, err)
		}
		if _, err := a.verify(newTok); err != nil {
			t.Errorf("%s: keys lost after a failed reload: %v", name, err)
		}
	}
}

// Server.ReloadKeys logs the outcome with the key count, never key material.
func TestServerReloadKeysLogs(t *testing.T) {
	testKeys(t)
	path := writeFile(t, "jwks.json", jwksJSON(jwkOf("a", &ecA.PublicKey)))
	cfg, err := config.Load([]string{"--addr=127.0.0.1:0", "--auth=jwt", "--jwks-file=" + path}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	srv, err := New(cfg, slog.New(slog.NewJSONHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Hub.Shutdown(ctx)
	}()
	newSet := jwksJSON(jwkOf("b", &rsaA.PublicKey), jwkOf("c", &ecB.PublicKey))
	replaceFile(t, path, newSet)
	if err := srv.ReloadKeys(); err != nil {
		t.Fatal(err)
	}
	replaceFile(t, path, []byte(`{"keys":[{"kty":"RSA","n":"`+b64(rsaB.N.Bytes())+`","e":"AQAB","d":"c2VjcmV0"}]}`))
	if err := srv.ReloadKeys(); err == nil {
		t.Fatal("reload of a private key succeeded")
	}
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		lines = append(lines, m)
	}
	if len(lines) != 2 || lines[0]["msg"] != "keys reloaded" || lines[0]["keys"] != 2.0 || lines[1]["level"] != "ERROR" {
		t.Errorf("logs: %v", lines)
	}
	var keyBits []string
	for _, k := range []any{jwkOf("", &rsaA.PublicKey), jwkOf("", &ecB.PublicKey)} {
		for _, f := range []string{"n", "x", "y"} {
			if v, ok := k.(map[string]any)[f].(string); ok {
				keyBits = append(keyBits, v[:16])
			}
		}
	}
	keyBits = append(keyBits, b64(rsaB.N.Bytes())[:16], "c2VjcmV0")
	for _, bit := range keyBits {
		if strings.Contains(logs.String(), bit) {
			t.Errorf("logs contain key material %q:\n%s", bit, logs.String())
		}
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
