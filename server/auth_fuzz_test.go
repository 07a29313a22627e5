package server

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"math/big"
	"net/http"
	"net/url"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/switchboardhq/switchboard"
	"github.com/switchboardhq/switchboard/server/config"
)

// The fuzz keys are fixed, so that the committed corpus under
// testdata/fuzz holds tokens that really verify (exp is in 2100).
const (
	fuzzSecret  = "fuzz-secret-5e1b"
	fuzzECPriv  = "c9afa9d845ba75166b5c215767b1d6934e50c3db36e89b127b8a622b120f6721"
	fuzzExpUnix = 4102444800
)

func fuzzECKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	d, _ := hex.DecodeString(fuzzECPriv)
	k, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), d)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// FuzzAuthenticate feeds arbitrary Authorization headers and token query
// values to an HS256 and an ES256 (JWKS) authenticator: neither may panic,
// an accepted token must carry a valid signature by the test key (checked
// here without golang-jwt), and no error may repeat the token.
func FuzzAuthenticate(f *testing.F) {
	ec := fuzzECKey(f)
	jwks := writeFile(f, "jwks.json", jwksJSON(jwkOf("fz", &ec.PublicKey)))
	hs := mustAuth(f, authCfg(func(c *config.Config) { c.JWTSecret = fuzzSecret }))
	es := mustAuth(f, authCfg(func(c *config.Config) { c.JWKSFile = jwks }))
	pubPEM := pkixPEM(f, &ec.PublicKey)

	cl := map[string]any{"sub": "alice", "exp": fuzzExpUnix, "rooms": []string{"chat:*"}}
	goodHS := signFixed(f, "HS256", []byte(fuzzSecret), cl, nil)
	goodES := signFixed(f, "ES256", ec, cl, map[string]any{"kid": "fz"})
	f.Add("Bearer "+goodHS, "")
	f.Add("", goodES)
	f.Add("bearer  "+goodES+" ", goodHS)
	f.Add("Bearer "+signFixed(f, "HS256", pubPEM, cl, map[string]any{"kid": "fz"}), "")
	f.Add("", b64([]byte(`{"alg":"none"}`))+"."+b64([]byte(`{"sub":"a","exp":4102444800}`))+".")
	f.Add("Basic YTpi", "x.y.z")
	f.Add("Bearer", "")

	f.Fuzz(func(t *testing.T, authz, tok string) {
		r := &http.Request{Method: "GET", Header: http.Header{},
			URL: &url.URL{Path: "/ws", RawQuery: url.Values{"token": {tok}}.Encode()}}
		if authz != "" {
			r.Header["Authorization"] = []string{authz}
		}
		raw := switchboard.BearerToken(r)
		for _, a := range []*jwtAuth{hs, es} {
			id, err := a.authenticate(r)
			if err != nil {
				if id != nil {
					t.Fatalf("identity with error %v", err)
				}
				if strings.Count(raw, ".") >= 2 && strings.Contains(err.Error(), raw) {
					t.Fatalf("error %q repeats the token", err)
				}
				continue
			}
			if id == nil || id.User == "" || id.ExpiresAt.IsZero() {
				t.Fatalf("bad identity %+v", id)
			}
			for _, room := range id.Rooms {
				if ValidRoomPattern(room) != nil {
					t.Fatalf("invalid room %q accepted", room)
				}
			}
			if !signedByTestKey(raw, a == hs, &ec.PublicKey) {
				t.Fatalf("accepted a token not signed by the test key: %q", raw)
			}
		}
	})
}

// signedByTestKey verifies a compact JWS with the standard library only.
func signedByTestKey(raw string, hmacMode bool, pub *ecdsa.PublicKey) bool {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return false
	}
	hdrJSON, err1 := base64.RawURLEncoding.DecodeString(parts[0])
	sig, err2 := base64.RawURLEncoding.DecodeString(parts[2])
	var hdr struct{ Alg string }
	if err1 != nil || err2 != nil || json.Unmarshal(hdrJSON, &hdr) != nil {
		return false
	}
	input := []byte(parts[0] + "." + parts[1])
	if hmacMode {
		m := hmac.New(sha256.New, []byte(fuzzSecret))
		m.Write(input)
		return hdr.Alg == "HS256" && hmac.Equal(m.Sum(nil), sig)
	}
	if hdr.Alg != "ES256" || len(sig) != 64 {
		return false
	}
	sum := sha256.Sum256(input)
	return ecdsa.Verify(pub, sum[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:]))
}

var roomPatternRE = regexp.MustCompile(`^(?:[A-Za-z0-9_.:@/-]{1,128}|[A-Za-z0-9_.:@/-]{0,128}\*)$`)

// FuzzParseRoomsClaim checks the rooms claim parser against its contract
// and ValidRoomPattern against a regular expression of the room grammar.
func FuzzParseRoomsClaim(f *testing.F) {
	for _, s := range []string{``, `null`, `[]`, `["chat:*","news"]`, `["*"]`, `"chat"`, `[1]`, `["a**"]`,
		`["a b"]`, `[""]`, `["` + strings.Repeat("x", 128) + `"]`, `["` + strings.Repeat("x", 129) + `"]`,
		`["user:alice","a/b@c.d-e_f:*"]`, `["\u0061"]`, `[null]`, `{"a":1}`, ` [ "a" ] `} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if got, want := ValidRoomPattern(string(data)) == nil, roomPatternRE.Match(data); got != want {
			t.Fatalf("ValidRoomPattern(%q) valid=%v, grammar says %v", data, got, want)
		}
		rooms, err := parseRoomsClaim(data)
		if err != nil {
			if rooms != nil {
				t.Fatalf("rooms %q with error", rooms)
			}
			if _, ok := err.(*roomsError); !ok {
				t.Fatalf("error of type %T", err)
			}
			return
		}
		if len(data) == 0 {
			if rooms != nil {
				t.Fatalf("no claim gave %q", rooms)
			}
			return
		}
		if rooms == nil {
			t.Fatalf("claim %q gave nil rooms (any room)", data)
		}
		for _, r := range rooms {
			if !roomPatternRE.MatchString(r) {
				t.Fatalf("accepted %q", r)
			}
		}
		again, err := json.Marshal(rooms)
		if err != nil {
			t.Fatal(err)
		}
		if back, err := parseRoomsClaim(again); err != nil || !reflect.DeepEqual(back, rooms) {
			t.Fatalf("round trip of %q: %q, %v", rooms, back, err)
		}
	})
}

// FuzzParseJWKS: no panic; an accepted set holds usable keys with unique
// kids, and re-encoding it gives the same set.
func FuzzParseJWKS(f *testing.F) {
	ec := fuzzECKey(f)
	e1 := jwkOf("e1", &ec.PublicKey)
	f.Add(jwksJSON(e1))
	f.Add(jwksJSON(jwkOf("", &ec.PublicKey)))
	f.Add([]byte(`{"keys":[{"kty":"RSA","kid":"r","n":"AQAB","e":"AQAB"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"EC","crv":"P-384","x":"AA","y":"AA"}]}`))
	f.Add([]byte(`{"keys":[]}`))
	f.Add([]byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		keys, err := parseJWKS(data)
		if err != nil {
			if keys != nil {
				t.Fatal("keys with error")
			}
			return
		}
		if _, err := newKeyTable(keys); err != nil {
			t.Fatalf("accepted set is not a key table: %v", err)
		}
		var again []map[string]any
		for _, k := range keys {
			switch p := k.pub.(type) {
			case *rsa.PublicKey:
				if k.alg != "RS256" || checkRSA(p) != nil {
					t.Fatalf("bad RSA key %v", k.alg)
				}
			case *ecdsa.PublicKey:
				if k.alg != "ES256" || p.Curve != elliptic.P256() {
					t.Fatalf("bad EC key %v", k.alg)
				}
			default:
				t.Fatalf("key of type %T", p)
			}
			again = append(again, jwkOf(k.kid, k.pub))
		}
		back, err := parseJWKS(jwksJSON(again...))
		if err != nil || len(back) != len(keys) {
			t.Fatalf("re-encoded set: %d keys, %v", len(back), err)
		}
		for i := range back {
			eq := back[i].pub.(interface{ Equal(crypto.PublicKey) bool }).Equal(keys[i].pub)
			if back[i].kid != keys[i].kid || back[i].alg != keys[i].alg || !eq {
				t.Fatalf("key %d changed in a round trip", i)
			}
		}
	})
}

func signFixed(t testing.TB, alg string, key any, cl, hdr map[string]any) string {
	t.Helper()
	return sign(t, jwt.GetSigningMethod(alg), key, jwt.MapClaims(cl), hdr)
}
