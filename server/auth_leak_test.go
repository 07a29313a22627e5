package server

import (
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Refusals are logged, so an authenticator error must never hold the token,
// any of its segments, or anything the token carries.
func TestAuthErrorsNeverContainTheToken(t *testing.T) {
	f := newAuthFixture(t)
	const mark = "LEAKMARK7q"
	now := time.Now()
	cl := jwt.MapClaims{"sub": mark + "-user", "exp": now.Add(time.Hour).Unix(), "iss": mark + "-iss", "aud": mark + "-aud"}
	hs := func(cl jwt.MapClaims, hdr map[string]any) string {
		return sign(t, jwt.SigningMethodHS256, testSecret, cl, hdr)
	}
	rs := func(cl jwt.MapClaims, hdr map[string]any) string {
		return sign(t, jwt.SigningMethodRS256, rsaA, cl, hdr)
	}
	markedHdr := map[string]any{"kid": mark + "-kid", "typ": mark}

	tests := []struct {
		name  string
		auth  *jwtAuth
		token string
	}{
		{"expired", f.hs, hs(with(cl, "exp", now.Add(-time.Hour).Unix()), markedHdr)},
		{"not yet valid", f.hs, hs(with(cl, "nbf", now.Add(time.Hour).Unix()), markedHdr)},
		{"exp a string", f.hs, hs(with(cl, "exp", mark), nil)},
		{"exp huge number", f.hs, hs(with(cl, "exp", "1e999"+mark), nil)},
		{"sub an object", f.hs, hs(with(cl, "sub", map[string]any{mark: mark}), nil)},
		{"sub with newline", f.hs, hs(with(cl, "sub", mark+"\n"+mark), nil)},
		{"wrong issuer", f.hsIss, hs(cl, nil)},
		{"wrong audience", f.rsaIssAud, rs(with(cl, "iss", "https://id.example"), nil)},
		{"bad room", f.hs, hs(with(cl, "rooms", []string{"ok", mark + " bad"}), nil)},
		{"rooms an object", f.hs, hs(with(cl, "rooms", map[string]any{mark: 1}), nil)},
		{"bad signature", f.hs, sign(t, jwt.SigningMethodHS256, []byte("other"), cl, markedHdr)},
		{"unknown kid", f.jwks, rs(cl, markedHdr)},
		{"kid an object", f.jwks, rs(cl, map[string]any{"kid": map[string]any{mark: mark}})},
		{"alg none", f.rsaPEM, sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, cl, markedHdr)},
		{"alg unknown", f.hs, b64([]byte(`{"alg":"`+mark+`"}`)) + "." + b64([]byte(`{}`)) + ".c2ln"},
		{"header not JSON", f.hs, b64([]byte(mark+"{")) + "." + b64([]byte(`{}`)) + ".c2ln"},
		{"payload not JSON", f.hs, b64([]byte(`{"alg":"HS256"}`)) + "." + b64([]byte("{"+mark)) + ".c2ln"},
		{"payload not base64", f.hs, b64([]byte(`{"alg":"HS256"}`)) + "." + mark + "!!!.c2ln"},
		{"two segments", f.hs, mark + "." + mark},
		{"four segments", f.hs, strings.Repeat(mark+".", 3) + mark},
		{"raw marker", f.hs, mark},
		{"too long", f.hs, strings.Repeat(mark, maxTokenBytes/len(mark)+1)},
		{"crit header", f.hs, hs(cl, map[string]any{"crit": []string{mark}})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, via := range []string{"header", "query"} {
				r := httptest.NewRequest("GET", "/ws", nil)
				if via == "header" {
					r.Header.Set("Authorization", "Bearer "+tt.token)
				} else {
					r.URL.RawQuery = url.Values{"token": {tt.token}}.Encode()
				}
				id, err := tt.auth.authenticate(r)
				if err == nil {
					t.Fatalf("%s: accepted %+v", via, id)
				}
				msg := err.Error()
				if strings.Contains(msg, tt.token) || strings.Contains(msg, mark) {
					t.Errorf("%s: error leaks the token: %q", via, msg)
				}
				for _, seg := range strings.Split(tt.token, ".") {
					if len(seg) >= 8 && strings.Contains(msg, seg) {
						t.Errorf("%s: error holds a token segment: %q", via, msg)
					}
				}
			}
		})
	}
}
