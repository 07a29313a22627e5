package server

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/switchboardhq/switchboard/server/config"
)

// Test keys are generated once per run: RSA 2048 is slow to make.
var (
	keysOnce             sync.Once
	rsaA, rsaB           *rsa.PrivateKey
	ecA, ecB             *ecdsa.PrivateKey
	testSecret           = []byte("test-secret-0f3c9a")
	testSecretConfigured = string(testSecret)
)

func testKeys(t testing.TB) {
	t.Helper()
	keysOnce.Do(func() {
		var err error
		for _, p := range []**rsa.PrivateKey{&rsaA, &rsaB} {
			if *p, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
				panic(err)
			}
		}
		for _, p := range []**ecdsa.PrivateKey{&ecA, &ecB} {
			if *p, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
				panic(err)
			}
		}
	})
}

// claimsAt are the usual claims: sub alice, exp in an hour.
func claimsAt(now time.Time) jwt.MapClaims {
	return jwt.MapClaims{"sub": "alice", "exp": now.Add(time.Hour).Unix(), "iat": now.Unix()}
}

// sign makes a token with method and key; hdr entries are added to the header.
func sign(t testing.TB, m jwt.SigningMethod, key any, cl jwt.MapClaims, hdr map[string]any) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, cl)
	for k, v := range hdr {
		tok.Header[k] = v
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("sign %s: %v", m.Alg(), err)
	}
	return s
}

func pkixPEM(t testing.TB, pub any) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// jwkOf is the JWK of a public key, with kid when not empty.
func jwkOf(kid string, pub any) map[string]any {
	m := map[string]any{}
	switch k := pub.(type) {
	case *rsa.PublicKey:
		m["kty"], m["n"], m["e"] = "RSA", b64(k.N.Bytes()), b64(big.NewInt(int64(k.E)).Bytes())
	case *ecdsa.PublicKey:
		raw, err := k.Bytes()
		if err != nil {
			panic(err)
		}
		m["kty"], m["crv"], m["x"], m["y"] = "EC", "P-256", b64(raw[1:33]), b64(raw[33:])
	default:
		panic("jwkOf: unsupported key")
	}
	if kid != "" {
		m["kid"] = kid
	}
	return m
}

func jwksJSON(keys ...map[string]any) []byte {
	if keys == nil {
		keys = []map[string]any{}
	}
	b, err := json.Marshal(map[string]any{"keys": keys})
	if err != nil {
		panic(err)
	}
	return b
}

func writeFile(t testing.TB, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// replaceFile rewrites path atomically, as operators should.
func replaceFile(t testing.TB, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// authCfg is a jwt configuration with the default leeway; mod sets the key.
func authCfg(mod func(*config.Config)) *config.Config {
	c := &config.Config{Auth: config.AuthJWT, JWTLeeway: 30 * time.Second}
	if mod != nil {
		mod(c)
	}
	return c
}

func mustAuth(t testing.TB, cfg *config.Config) *jwtAuth {
	t.Helper()
	a, err := newJWTAuth(cfg)
	if err != nil {
		t.Fatalf("newJWTAuth: %v", err)
	}
	return a
}
