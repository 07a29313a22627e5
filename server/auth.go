package server

import (
	"crypto"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/switchboardhq/switchboard"
	"github.com/switchboardhq/switchboard/server/config"
)

// claims are the token fields Switchboard reads: sub is the user id, rooms
// the optional allow-list of rooms.
type claims struct {
	jwt.RegisteredClaims
	Rooms []string `json:"rooms,omitempty"`
}

// newAuthenticator builds the handshake authenticator the configuration asks for.
func newAuthenticator(cfg *config.Config) (switchboard.Authenticator, error) {
	if cfg.Auth == config.AuthNone {
		return switchboard.QueryUserAuth, nil
	}
	var key any
	var algs []string
	switch {
	case cfg.JWTSecret != "":
		key, algs = []byte(cfg.JWTSecret), []string{"HS256"}
	case cfg.JWTPublicKey != "":
		pemBytes, err := os.ReadFile(cfg.JWTPublicKey)
		if err != nil {
			return nil, fmt.Errorf("read --jwt-public-key: %w", err)
		}
		pub, alg, err := parsePublicKey(pemBytes)
		if err != nil {
			return nil, fmt.Errorf("--jwt-public-key %s: %w", cfg.JWTPublicKey, err)
		}
		key, algs = pub, []string{alg}
	default:
		return nil, errors.New("--auth=jwt needs --jwt-secret or --jwt-public-key")
	}
	parser := jwt.NewParser(jwt.WithValidMethods(algs), jwt.WithLeeway(cfg.JWTLeeway),
		jwt.WithExpirationRequired())
	return func(r *http.Request) (*switchboard.Identity, error) {
		raw := switchboard.BearerToken(r)
		if raw == "" {
			return nil, errors.New("no token")
		}
		var cl claims
		if _, err := parser.ParseWithClaims(raw, &cl, func(*jwt.Token) (any, error) { return key, nil }); err != nil {
			// jwt's messages name the failed check, never the token itself.
			return nil, fmt.Errorf("token rejected: %w", err)
		}
		if cl.Subject == "" {
			return nil, errors.New("token has no sub")
		}
		id := &switchboard.Identity{User: cl.Subject, Rooms: cl.Rooms}
		if cl.ExpiresAt != nil {
			id.ExpiresAt = cl.ExpiresAt.Add(cfg.JWTLeeway)
		}
		return id, nil
	}, nil
}

func parsePublicKey(pemBytes []byte) (crypto.PublicKey, string, error) {
	if k, err := jwt.ParseRSAPublicKeyFromPEM(pemBytes); err == nil {
		return k, "RS256", nil
	}
	if k, err := jwt.ParseECPublicKeyFromPEM(pemBytes); err == nil {
		return k, "ES256", nil
	}
	return nil, "", errors.New("not an RSA or EC public key in PEM form")
}

// MintToken signs a development token for user with the HS256 secret.
func MintToken(secret, user string, ttl time.Duration, rooms []string) (string, error) {
	if secret == "" {
		return "", errors.New("a secret is needed: --jwt-secret or SWITCHBOARD_JWT_SECRET")
	}
	now := time.Now()
	cl := claims{RegisteredClaims: jwt.RegisteredClaims{
		Subject:   user,
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}, Rooms: rooms}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, cl).SignedString([]byte(secret))
}
