package server

import (
	"errors"
	"fmt"
	"net/http"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"

	"github.com/switchboardhq/switchboard"
	"github.com/switchboardhq/switchboard/server/config"
)

// Limits on what a token may hold.
const (
	maxTokenBytes = 16 << 10
	maxUserBytes  = 256
)

// tokenClaims are the token fields Switchboard reads: sub is the user id,
// rooms the optional allow-list of rooms (see parseRoomsClaim).
type tokenClaims struct {
	jwt.RegisteredClaims
	Rooms roomsClaim `json:"rooms,omitzero"`
}

// Why a token was refused. Every message is fixed text: none repeats the
// token or anything taken from it, because refusals are logged.
var (
	errNoToken       = errors.New("no token")
	errTokenTooLong  = fmt.Errorf("token longer than %d bytes", maxTokenBytes)
	errUnknownKID    = errors.New("kid names no known key")
	errNoKID         = errors.New("token has no kid and the key set holds several keys")
	errBadKID        = errors.New("kid header is not a non-empty string")
	errAlgMismatch   = errors.New("alg does not match the verification key")
	errCritHeader    = errors.New("crit header is not supported")
	errNoSubject     = errors.New("sub claim is missing or empty")
	errBadSubject    = fmt.Errorf("sub claim is not printable UTF-8 of at most %d bytes", maxUserBytes)
	errInvalidToken  = errors.New("invalid token")
	errRejectedClass = errors.New("token rejected")
)

// jwtAuth verifies tokens with either an HS256 secret or the RS256/ES256
// keys of a keySet, never both: the algorithm family is fixed by the
// configuration and the algorithm of each key by its type.
type jwtAuth struct {
	parser *jwt.Parser
	secret []byte  // HS256
	keys   *keySet // RS256 / ES256
	leeway time.Duration
}

// newAuthenticator builds the handshake authenticator the configuration
// asks for, and the key set that SIGHUP reloads (nil with --auth=none or
// --jwt-secret).
func newAuthenticator(cfg *config.Config) (switchboard.Authenticator, *keySet, error) {
	if cfg.Auth == config.AuthNone {
		return switchboard.QueryUserAuth, nil, nil
	}
	a, err := newJWTAuth(cfg)
	if err != nil {
		return nil, nil, err
	}
	return a.authenticate, a.keys, nil
}

func newJWTAuth(cfg *config.Config) (*jwtAuth, error) {
	a := &jwtAuth{leeway: cfg.JWTLeeway}
	var algs []string
	var err error
	switch {
	case cfg.JWTSecret != "":
		a.secret, algs = []byte(cfg.JWTSecret), []string{"HS256"}
	case cfg.JWTPublicKey != "":
		a.keys, err = newKeySet("--jwt-public-key", cfg.JWTPublicKey)
		algs = []string{"RS256", "ES256"}
	case cfg.JWKSFile != "":
		a.keys, err = newKeySet("--jwks-file", cfg.JWKSFile)
		algs = []string{"RS256", "ES256"}
	default:
		return nil, errors.New("--auth=jwt needs --jwt-secret, --jwt-public-key or --jwks-file")
	}
	if err != nil {
		return nil, err
	}
	opts := []jwt.ParserOption{jwt.WithValidMethods(algs), jwt.WithLeeway(cfg.JWTLeeway), jwt.WithExpirationRequired()}
	if cfg.JWTIssuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.JWTIssuer))
	}
	if cfg.JWTAudience != "" {
		opts = append(opts, jwt.WithAudience(cfg.JWTAudience))
	}
	a.parser = jwt.NewParser(opts...)
	return a, nil
}

// authenticate is the switchboard.Authenticator: the token comes from the
// Authorization header or the token query parameter (switchboard.BearerToken).
func (a *jwtAuth) authenticate(r *http.Request) (*switchboard.Identity, error) {
	return a.verify(switchboard.BearerToken(r))
}

// verify checks a raw token and returns the identity it grants.
func (a *jwtAuth) verify(raw string) (*switchboard.Identity, error) {
	switch {
	case raw == "":
		return nil, errNoToken
	case len(raw) > maxTokenBytes:
		return nil, errTokenTooLong
	}
	var cl tokenClaims
	if _, err := a.parser.ParseWithClaims(raw, &cl, a.keyFunc); err != nil {
		return nil, rejection(err)
	}
	if err := checkUser(cl.Subject); err != nil {
		return nil, fmt.Errorf("%w: %w", errRejectedClass, err)
	}
	id := &switchboard.Identity{User: cl.Subject, ExpiresAt: cl.ExpiresAt.Add(a.leeway)}
	if cl.Rooms.set {
		id.Rooms = cl.Rooms.rooms
	}
	return id, nil
}

// keyFunc picks the verification key for a token whose alg the parser has
// already found in the allow-list.
func (a *jwtAuth) keyFunc(t *jwt.Token) (any, error) {
	if _, ok := t.Header["crit"]; ok {
		return nil, errCritHeader
	}
	alg := t.Method.Alg()
	if a.secret != nil {
		if alg != "HS256" {
			return nil, errAlgMismatch
		}
		return a.secret, nil
	}
	kid := ""
	if v, ok := t.Header["kid"]; ok {
		s, ok := v.(string)
		if !ok || s == "" {
			return nil, errBadKID
		}
		kid = s
	}
	k, err := a.keys.current().lookup(kid)
	if err != nil {
		return nil, err
	}
	if k.alg != alg { // an RSA key never verifies ES256, nor an EC key RS256
		return nil, errAlgMismatch
	}
	return k.pub, nil
}

// rejection turns a parser error into one of a fixed set of messages, so
// that nothing the token holds reaches the logs. The result wraps the
// sentinel it stands for (errors.Is works on it).
func rejection(err error) error {
	var re *roomsError
	if errors.As(err, &re) {
		return fmt.Errorf("%w: %w", errRejectedClass, re)
	}
	for _, own := range []error{errUnknownKID, errNoKID, errBadKID, errAlgMismatch, errCritHeader} {
		if errors.Is(err, own) {
			return fmt.Errorf("%w: %w", errRejectedClass, own)
		}
	}
	for _, c := range []struct {
		sentinel error
		what     string
	}{
		{jwt.ErrTokenMalformed, "malformed"},
		{jwt.ErrTokenSignatureInvalid, "signature invalid or algorithm not allowed"},
		{jwt.ErrTokenUnverifiable, "unverifiable: unknown algorithm"},
		{jwt.ErrTokenRequiredClaimMissing, "a required claim is missing (exp; iss or aud when configured)"},
		{jwt.ErrTokenExpired, "expired"},
		{jwt.ErrTokenNotValidYet, "not valid yet (nbf)"},
		{jwt.ErrTokenInvalidIssuer, "wrong issuer"},
		{jwt.ErrTokenInvalidAudience, "wrong audience"},
		{jwt.ErrTokenUsedBeforeIssued, "used before issued"},
		{jwt.ErrTokenInvalidClaims, "invalid claims"},
	} {
		if errors.Is(err, c.sentinel) {
			return fmt.Errorf("%w: %s: %w", errRejectedClass, c.what, c.sentinel)
		}
	}
	return fmt.Errorf("%w: %w", errRejectedClass, errInvalidToken)
}

// checkUser accepts a user id (the sub claim): 1 to 256 bytes of UTF-8
// without control characters.
func checkUser(sub string) error {
	if sub == "" {
		return errNoSubject
	}
	if len(sub) > maxUserBytes || !utf8.ValidString(sub) {
		return errBadSubject
	}
	for _, r := range sub {
		if unicode.IsControl(r) {
			return errBadSubject
		}
	}
	return nil
}

// TokenOptions describe a token minted by MintHS256.
type TokenOptions struct {
	User     string        // sub; required
	TTL      time.Duration // lifetime; must be positive
	Rooms    []string      // rooms claim; nil leaves it out (any room)
	Issuer   string        // iss, when not empty
	Audience string        // aud, when not empty
}

// MintHS256 signs a development token with the HS256 secret. Rooms entries
// are checked with the same rules as a server applies to the claim.
func MintHS256(secret string, o TokenOptions) (string, error) {
	if secret == "" {
		return "", errors.New("a secret is needed: --jwt-secret or SWITCHBOARD_JWT_SECRET")
	}
	if err := checkUser(o.User); err != nil {
		return "", fmt.Errorf("user: %w", err)
	}
	if o.TTL <= 0 {
		return "", fmt.Errorf("ttl must be positive, got %s", o.TTL)
	}
	for _, r := range o.Rooms {
		if err := ValidRoomPattern(r); err != nil {
			return "", fmt.Errorf("rooms entry %q: %w", r, err)
		}
	}
	now := time.Now()
	cl := tokenClaims{RegisteredClaims: jwt.RegisteredClaims{
		Subject:   o.User,
		Issuer:    o.Issuer,
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(o.TTL)),
	}, Rooms: roomsClaim{rooms: o.Rooms, set: o.Rooms != nil}}
	if o.Audience != "" {
		cl.Audience = jwt.ClaimStrings{o.Audience}
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, cl).SignedString([]byte(secret))
}

// MintToken signs a development token for user with the HS256 secret.
func MintToken(secret, user string, ttl time.Duration, rooms []string) (string, error) {
	return MintHS256(secret, TokenOptions{User: user, TTL: ttl, Rooms: rooms})
}
