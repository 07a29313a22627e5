package server

import (
	"crypto/x509"
	"errors"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/switchboardhq/switchboard/server/config"
)

// authFixture holds one authenticator per way of configuring keys.
type authFixture struct {
	hs, rsaPEM, ecPEM, jwks, jwksOne, hsIss, rsaIssAud, hsZero *jwtAuth
	rsaPEMBytes                                                []byte
}

func newAuthFixture(t *testing.T) *authFixture {
	t.Helper()
	testKeys(t)
	f := &authFixture{}
	f.rsaPEMBytes = pkixPEM(t, &rsaA.PublicKey)
	rsaPath := writeFile(t, "rsa.pem", f.rsaPEMBytes)
	ecPath := writeFile(t, "ec.pem", pkixPEM(t, &ecA.PublicKey))
	jwksPath := writeFile(t, "jwks.json", jwksJSON(jwkOf("r1", &rsaA.PublicKey), jwkOf("e1", &ecA.PublicKey), jwkOf("r2", &rsaB.PublicKey)))
	onePath := writeFile(t, "one.json", jwksJSON(jwkOf("e1", &ecA.PublicKey)))
	f.hs = mustAuth(t, authCfg(func(c *config.Config) { c.JWTSecret = testSecretConfigured }))
	f.hsZero = mustAuth(t, authCfg(func(c *config.Config) { c.JWTSecret = testSecretConfigured; c.JWTLeeway = 0 }))
	f.rsaPEM = mustAuth(t, authCfg(func(c *config.Config) { c.JWTPublicKey = rsaPath }))
	f.ecPEM = mustAuth(t, authCfg(func(c *config.Config) { c.JWTPublicKey = ecPath }))
	f.jwks = mustAuth(t, authCfg(func(c *config.Config) { c.JWKSFile = jwksPath }))
	f.jwksOne = mustAuth(t, authCfg(func(c *config.Config) { c.JWKSFile = onePath }))
	f.hsIss = mustAuth(t, authCfg(func(c *config.Config) { c.JWTSecret = testSecretConfigured; c.JWTIssuer = "https://id.example" }))
	f.rsaIssAud = mustAuth(t, authCfg(func(c *config.Config) {
		c.JWTPublicKey = rsaPath
		c.JWTIssuer, c.JWTAudience = "https://id.example", "switchboard"
	}))
	return f
}

func with(cl jwt.MapClaims, kv ...any) jwt.MapClaims {
	out := jwt.MapClaims{}
	for k, v := range cl {
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

func TestVerify(t *testing.T) {
	f := newAuthFixture(t)
	now := time.Now()
	base := claimsAt(now)
	hs := func(cl jwt.MapClaims) string { return sign(t, jwt.SigningMethodHS256, testSecret, cl, nil) }
	rs := func(cl jwt.MapClaims, hdr map[string]any) string {
		return sign(t, jwt.SigningMethodRS256, rsaA, cl, hdr)
	}
	rsB := func(cl jwt.MapClaims, hdr map[string]any) string {
		return sign(t, jwt.SigningMethodRS256, rsaB, cl, hdr)
	}
	es := func(cl jwt.MapClaims, hdr map[string]any) string {
		return sign(t, jwt.SigningMethodES256, ecA, cl, hdr)
	}
	esB := func(cl jwt.MapClaims, hdr map[string]any) string {
		return sign(t, jwt.SigningMethodES256, ecB, cl, hdr)
	}
	none := func(cl jwt.MapClaims, hdr map[string]any) string {
		return sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, cl, hdr)
	}
	der, err := x509.MarshalPKIXPublicKey(&rsaA.PublicKey)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name  string
		auth  *jwtAuth
		token string
		want  error    // nil: accepted
		rooms []string // when accepted
	}{
		{"HS256 valid", f.hs, hs(base), nil, nil},
		{"RS256 valid (PEM)", f.rsaPEM, rs(base, nil), nil, nil},
		{"RS256 with any kid (PEM key has none)", f.rsaPEM, rs(base, map[string]any{"kid": "x"}), nil, nil},
		{"ES256 valid (PEM)", f.ecPEM, es(base, nil), nil, nil},
		{"expired beyond leeway", f.hs, hs(with(base, "exp", now.Add(-time.Minute).Unix())), jwt.ErrTokenExpired, nil},
		{"expired within leeway", f.hs, hs(with(base, "exp", now.Add(-10*time.Second).Unix())), nil, nil},
		{"expired, zero leeway", f.hsZero, hs(with(base, "exp", now.Add(-2*time.Second).Unix())), jwt.ErrTokenExpired, nil},
		{"nbf in the future", f.hs, hs(with(base, "nbf", now.Add(2*time.Minute).Unix())), jwt.ErrTokenNotValidYet, nil},
		{"nbf within leeway", f.hs, hs(with(base, "nbf", now.Add(10*time.Second).Unix())), nil, nil},
		{"missing sub", f.hs, hs(with(base, "sub", nil)), errNoSubject, nil},
		{"empty sub", f.rsaPEM, rs(with(base, "sub", ""), nil), errNoSubject, nil},
		{"sub with control characters", f.hs, hs(with(base, "sub", "al\nice")), errBadSubject, nil},
		{"sub not a string", f.hs, hs(with(base, "sub", 42)), jwt.ErrTokenMalformed, nil},
		{"missing exp", f.hs, hs(with(base, "exp", nil)), jwt.ErrTokenRequiredClaimMissing, nil},
		{"missing exp (ES256)", f.ecPEM, es(with(base, "exp", nil), nil), jwt.ErrTokenRequiredClaimMissing, nil},
		{"issuer right", f.hsIss, hs(with(base, "iss", "https://id.example")), nil, nil},
		{"issuer wrong", f.hsIss, hs(with(base, "iss", "https://evil.example")), jwt.ErrTokenInvalidIssuer, nil},
		{"issuer missing", f.hsIss, hs(base), jwt.ErrTokenRequiredClaimMissing, nil},
		{"issuer not configured", f.hs, hs(with(base, "iss", "anyone")), nil, nil},
		{"iss and aud right", f.rsaIssAud, rs(with(base, "iss", "https://id.example", "aud", "switchboard"), nil), nil, nil},
		{"aud list containing ours", f.rsaIssAud, rs(with(base, "iss", "https://id.example", "aud", []string{"x", "switchboard"}), nil), nil, nil},
		{"aud wrong", f.rsaIssAud, rs(with(base, "iss", "https://id.example", "aud", "other"), nil), jwt.ErrTokenInvalidAudience, nil},
		{"aud missing", f.rsaIssAud, rs(with(base, "iss", "https://id.example"), nil), jwt.ErrTokenRequiredClaimMissing, nil},
		{"aud not configured", f.rsaPEM, rs(with(base, "aud", "other"), nil), nil, nil},
		{"HS256 with public key PEM as secret vs RS256", f.rsaPEM, sign(t, jwt.SigningMethodHS256, f.rsaPEMBytes, base, nil), jwt.ErrTokenSignatureInvalid, nil},
		{"HS256 with public key DER as secret vs RS256", f.rsaPEM, sign(t, jwt.SigningMethodHS256, der, base, nil), jwt.ErrTokenSignatureInvalid, nil},
		{"HS256 with public key PEM as secret vs JWKS", f.jwks, sign(t, jwt.SigningMethodHS256, f.rsaPEMBytes, base, map[string]any{"kid": "r1"}), jwt.ErrTokenSignatureInvalid, nil},
		{"RS256 vs HS256 server", f.hs, rs(base, nil), jwt.ErrTokenSignatureInvalid, nil},
		{"alg none vs HS256", f.hs, none(base, nil), jwt.ErrTokenSignatureInvalid, nil},
		{"alg none vs RS256", f.rsaPEM, none(base, nil), jwt.ErrTokenSignatureInvalid, nil},
		{"alg none vs JWKS", f.jwks, none(base, map[string]any{"kid": "r1"}), jwt.ErrTokenSignatureInvalid, nil},
		{"RS256 vs EC key", f.ecPEM, rs(base, nil), errAlgMismatch, nil},
		{"ES256 vs RSA key", f.rsaPEM, es(base, nil), errAlgMismatch, nil},
		{"ES256 by another key", f.ecPEM, esB(base, nil), jwt.ErrTokenSignatureInvalid, nil},
		{"HS256 by another secret", f.hs, sign(t, jwt.SigningMethodHS256, []byte("other"), base, nil), jwt.ErrTokenSignatureInvalid, nil},
		{"JWKS kid r1", f.jwks, rs(base, map[string]any{"kid": "r1"}), nil, nil},
		{"JWKS kid r2", f.jwks, rsB(base, map[string]any{"kid": "r2"}), nil, nil},
		{"JWKS kid e1", f.jwks, es(base, map[string]any{"kid": "e1"}), nil, nil},
		{"JWKS kid names another key", f.jwks, rsB(base, map[string]any{"kid": "r1"}), jwt.ErrTokenSignatureInvalid, nil},
		{"JWKS kid of another algorithm", f.jwks, es(base, map[string]any{"kid": "r1"}), errAlgMismatch, nil},
		{"JWKS unknown kid", f.jwks, rs(base, map[string]any{"kid": "r9"}), errUnknownKID, nil},
		{"JWKS no kid, several keys", f.jwks, rs(base, nil), errNoKID, nil},
		{"JWKS kid not a string", f.jwks, rs(base, map[string]any{"kid": 7}), errBadKID, nil},
		{"JWKS one key, no kid", f.jwksOne, es(base, nil), nil, nil},
		{"JWKS one key, wrong kid", f.jwksOne, es(base, map[string]any{"kid": "zz"}), errUnknownKID, nil},
		{"crit header", f.hs, sign(t, jwt.SigningMethodHS256, testSecret, base, map[string]any{"crit": []string{"exp"}}), errCritHeader, nil},
		{"rooms claim", f.hs, hs(with(base, "rooms", []string{"chat:*", "news"})), nil, []string{"chat:*", "news"}},
		{"rooms claim empty: no rooms", f.hs, hs(with(base, "rooms", []string{})), nil, []string{}},
		{"rooms claim *", f.hs, hs(with(base, "rooms", []string{"*"})), nil, []string{"*"}},
		{"rooms claim a string", f.hs, hs(with(base, "rooms", "chat:*")), errRoomsNotList, nil},
		{"rooms claim null", f.hs, hs(with(base, "rooms", []any(nil))), errRoomsNotList, nil},
		{"rooms claim numbers", f.hs, hs(with(base, "rooms", []any{1})), &roomsError{}, nil},
		{"rooms claim bad name", f.hs, hs(with(base, "rooms", []string{"a b"})), &roomsError{}, nil},
		{"rooms claim two stars", f.hs, hs(with(base, "rooms", []string{"a**"})), &roomsError{}, nil},
		{"rooms claim too long", f.hs, hs(with(base, "rooms", []string{strings.Repeat("a", 129)})), &roomsError{}, nil},
		{"tampered payload", f.hs, tamper(hs(base)), jwt.ErrTokenSignatureInvalid, nil},
		{"too long", f.hs, strings.Repeat("a", maxTokenBytes+1), errTokenTooLong, nil},
		{"empty", f.hs, "", errNoToken, nil},
		{"garbage", f.hs, "not.a.jwt", jwt.ErrTokenMalformed, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := tt.auth.verify(tt.token)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				if id.User != "alice" || id.ExpiresAt.IsZero() {
					t.Errorf("identity %+v", id)
				}
				if !reflect.DeepEqual(id.Rooms, tt.rooms) {
					t.Errorf("rooms %#v, want %#v", id.Rooms, tt.rooms)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted %+v, want %v", id, tt.want)
			}
			if id != nil {
				t.Errorf("identity %+v returned with error", id)
			}
			var re *roomsError
			if _, isRooms := tt.want.(*roomsError); isRooms {
				if !errors.As(err, &re) {
					t.Errorf("error %v, want a rooms claim error", err)
				}
			} else if !errors.Is(err, tt.want) {
				t.Errorf("error %q, want %q", err, tt.want)
			}
			if !strings.HasPrefix(err.Error(), "token rejected: ") && tt.token != "" && len(tt.token) <= maxTokenBytes {
				t.Errorf("error %q does not start with \"token rejected: \"", err)
			}
		})
	}
}

// tamper swaps the payload's user for another, keeping the signature.
func tamper(tok string) string {
	parts := strings.Split(tok, ".")
	parts[1] = b64([]byte(`{"sub":"mallory","exp":4102444800}`))
	return strings.Join(parts, ".")
}

func TestIdentityExpiry(t *testing.T) {
	f := newAuthFixture(t)
	exp := time.Now().Add(time.Hour).Truncate(time.Second)
	id, err := f.hs.verify(sign(t, jwt.SigningMethodHS256, testSecret, jwt.MapClaims{"sub": "bob", "exp": exp.Unix()}, nil))
	if err != nil {
		t.Fatal(err)
	}
	if want := exp.Add(30 * time.Second); !id.ExpiresAt.Equal(want) {
		t.Errorf("ExpiresAt %v, want exp + leeway %v", id.ExpiresAt, want)
	}
	if id.Rooms != nil {
		t.Errorf("no rooms claim gave %#v, want nil (any room)", id.Rooms)
	}
}

// The authenticator takes the token from the header first, then ?token=.
func TestAuthenticateExtraction(t *testing.T) {
	f := newAuthFixture(t)
	good := sign(t, jwt.SigningMethodHS256, testSecret, claimsAt(time.Now()), nil)
	tests := []struct {
		name, header, query string
		ok                  bool
	}{
		{"header", "Bearer " + good, "", true},
		{"header, lower case scheme", "bearer " + good, "", true},
		{"query", "", good, true},
		{"header beats query", "Bearer junk", good, false},
		{"basic auth ignored, query used", "Basic dXNlcjpwdw==", good, true},
		{"nothing", "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/ws?token="+url.QueryEscape(tt.query), nil)
			if tt.header != "" {
				r.Header.Set("Authorization", tt.header)
			}
			id, err := f.hs.authenticate(r)
			if (err == nil) != tt.ok || (err == nil && id.User != "alice") {
				t.Errorf("got %+v, %v; want ok=%v", id, err, tt.ok)
			}
		})
	}
}

func TestNewAuthenticatorModes(t *testing.T) {
	testKeys(t)
	auth, keys, err := newAuthenticator(&config.Config{Auth: config.AuthNone})
	if err != nil || auth == nil || keys != nil {
		t.Fatalf("auth none: %v %v %v", auth != nil, keys, err)
	}
	if _, keys, err = newAuthenticator(authCfg(func(c *config.Config) { c.JWTSecret = "s" })); err != nil || keys != nil {
		t.Fatalf("secret: keys %v err %v", keys, err)
	}
	path := writeFile(t, "k.pem", pkixPEM(t, &ecA.PublicKey))
	if _, keys, err = newAuthenticator(authCfg(func(c *config.Config) { c.JWTPublicKey = path })); err != nil || keys == nil {
		t.Fatalf("public key: keys %v err %v", keys, err)
	}
	for name, mod := range map[string]func(*config.Config){
		"no key":       nil,
		"missing file": func(c *config.Config) { c.JWKSFile = tempPath(t, "absent.json") },
		"bad jwks":     func(c *config.Config) { c.JWKSFile = writeFile(t, "bad.json", []byte(`{"keys":[]}`)) },
	} {
		if _, _, err := newAuthenticator(authCfg(mod)); err == nil {
			t.Errorf("%s: started", name)
		}
	}
}

func tempPath(t *testing.T, name string) string { return t.TempDir() + "/" + name }
