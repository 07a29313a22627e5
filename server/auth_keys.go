package server

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"sync/atomic"
)

// Key sizes accepted for verification.
const (
	minRSABits   = 2048
	maxRSABits   = 8192
	maxKeyFile   = 1 << 20 // bytes read from --jwt-public-key or --jwks-file
	p256CoordLen = 32
)

// verifyKey is one public key and the only algorithm it verifies.
type verifyKey struct {
	kid string           // "" for a PEM key or a JWK without kid
	alg string           // "RS256" or "ES256"
	pub crypto.PublicKey // *rsa.PublicKey or *ecdsa.PublicKey (P-256)
}

// keyTable is one immutable generation of verification keys.
type keyTable struct {
	keys  []verifyKey
	byKID map[string]*verifyKey
}

func newKeyTable(keys []verifyKey) (*keyTable, error) {
	if len(keys) == 0 {
		return nil, errors.New("no keys")
	}
	t := &keyTable{keys: keys, byKID: make(map[string]*verifyKey, len(keys))}
	for i := range keys {
		k := &keys[i]
		if k.kid == "" {
			if len(keys) > 1 {
				return nil, fmt.Errorf("key %d has no kid; every key needs one when the set holds several", i)
			}
			continue
		}
		if _, dup := t.byKID[k.kid]; dup {
			return nil, fmt.Errorf("key %d: duplicate kid %q", i, k.kid)
		}
		t.byKID[k.kid] = k
	}
	return t, nil
}

// lookup selects the key for a token's kid header ("" when absent). A
// token without kid is accepted only when the set holds exactly one key; a
// kid must name a key, except that a lone key without kid (a PEM key)
// verifies whatever kid the token carries.
func (t *keyTable) lookup(kid string) (*verifyKey, error) {
	if kid != "" {
		if k, ok := t.byKID[kid]; ok {
			return k, nil
		}
		if len(t.keys) == 1 && t.keys[0].kid == "" {
			return &t.keys[0], nil
		}
		return nil, errUnknownKID
	}
	if len(t.keys) != 1 {
		return nil, errNoKID
	}
	return &t.keys[0], nil
}

// keySet holds the current verification keys of --jwt-public-key or
// --jwks-file behind an atomic pointer: the authenticator reads them
// without a lock, Reload swaps in a new generation.
type keySet struct {
	source string // flag and file, for messages: "--jwks-file /etc/jwks.json"
	read   func() (*keyTable, error)
	cur    atomic.Pointer[keyTable]
}

// newKeySet loads the keys of the configured file once; the error of a
// first load is fatal to start-up.
func newKeySet(flag, path string) (*keySet, error) {
	parse := parsePEMKeys
	if flag == "--jwks-file" {
		parse = parseJWKS
	}
	ks := &keySet{source: flag + " " + path}
	ks.read = func() (*keyTable, error) {
		data, err := readKeyFile(path)
		if err != nil {
			return nil, err
		}
		keys, err := parse(data)
		if err != nil {
			return nil, err
		}
		return newKeyTable(keys)
	}
	if _, err := ks.Reload(); err != nil {
		return nil, err
	}
	return ks, nil
}

// Reload re-reads the key file and, when it holds a valid key set, makes it
// current; it returns the number of keys now in use. On failure the keys in
// use stay as they were. Errors name the file and the problem, never key
// material.
func (ks *keySet) Reload() (int, error) {
	t, err := ks.read()
	if err != nil {
		return 0, fmt.Errorf("%s: %w", ks.source, err)
	}
	ks.cur.Store(t)
	return len(t.keys), nil
}

func (ks *keySet) current() *keyTable { return ks.cur.Load() }

func readKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxKeyFile {
		return nil, fmt.Errorf("larger than %d bytes", maxKeyFile)
	}
	return data, nil
}

// parsePEMKeys reads one RSA (2048 to 8192 bits) or EC P-256 public key:
// a PUBLIC KEY (PKIX), RSA PUBLIC KEY (PKCS #1) or CERTIFICATE block.
func parsePEMKeys(data []byte) ([]verifyKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block found")
	}
	var pub any
	var err error
	switch block.Type {
	case "PUBLIC KEY":
		pub, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		pub, err = x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		var cert *x509.Certificate
		if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
			pub = cert.PublicKey
		}
	case "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY":
		return nil, fmt.Errorf("holds a %s: give the public key only", block.Type)
	default:
		return nil, fmt.Errorf("PEM block %q is not a public key", block.Type)
	}
	if err != nil {
		return nil, errors.New("malformed public key")
	}
	k, err := checkPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return []verifyKey{k}, nil
}

func checkPublicKey(pub any) (verifyKey, error) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if err := checkRSA(k); err != nil {
			return verifyKey{}, err
		}
		return verifyKey{alg: "RS256", pub: k}, nil
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return verifyKey{}, errors.New("EC key is not on curve P-256 (ES256)")
		}
		return verifyKey{alg: "ES256", pub: k}, nil
	}
	return verifyKey{}, fmt.Errorf("unsupported key type %T: RSA (RS256) or EC P-256 (ES256) only", pub)
}

func checkRSA(k *rsa.PublicKey) error {
	if n := k.N.BitLen(); n < minRSABits || n > maxRSABits {
		return fmt.Errorf("RSA key of %d bits: %d to %d bits accepted", n, minRSABits, maxRSABits)
	}
	if k.E < 3 || k.E%2 == 0 || k.E > 1<<31-1 {
		return errors.New("RSA public exponent must be odd, at least 3 and below 2^31")
	}
	return nil
}

// jwk is one member of a JWKS "keys" array, as far as Switchboard reads it.
// Other members (x5c, key_ops, ...) are ignored, as RFC 7517 asks.
type jwk struct {
	Kty string  `json:"kty"`
	Kid string  `json:"kid"`
	Alg string  `json:"alg"`
	Use string  `json:"use"`
	Crv string  `json:"crv"`
	N   string  `json:"n"`
	E   string  `json:"e"`
	X   string  `json:"x"`
	Y   string  `json:"y"`
	D   *string `json:"d"`
}

// parseJWKS reads a JSON Web Key Set of RSA and EC P-256 public keys. It
// is strict: unknown kty or crv, missing or malformed fields, private keys,
// use other than "sig", alg other than RS256/ES256 and duplicate kids are
// errors, and so is an empty set.
func parseJWKS(data []byte) ([]verifyKey, error) {
	var doc struct {
		Keys *[]json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, errors.New("not a JWKS: invalid JSON or not an object")
	}
	if doc.Keys == nil {
		return nil, errors.New(`not a JWKS: no "keys" array`)
	}
	if len(*doc.Keys) == 0 {
		return nil, errors.New("no keys")
	}
	keys := make([]verifyKey, 0, len(*doc.Keys))
	for i, raw := range *doc.Keys {
		var j jwk
		if err := json.Unmarshal(raw, &j); err != nil {
			return nil, fmt.Errorf("key %d: not a JWK object with string members", i)
		}
		k, err := j.verifyKey()
		if err != nil {
			return nil, fmt.Errorf("key %d: %w", i, err)
		}
		keys = append(keys, k)
	}
	if _, err := newKeyTable(keys); err != nil { // duplicate or missing kids
		return nil, err
	}
	return keys, nil
}

func (j *jwk) verifyKey() (verifyKey, error) {
	if j.D != nil {
		return verifyKey{}, errors.New(`holds private key material ("d"): publish public keys only`)
	}
	if j.Use != "" && j.Use != "sig" {
		return verifyKey{}, errors.New(`"use" must be "sig" when present`)
	}
	var k verifyKey
	switch j.Kty {
	case "RSA":
		n, err := b64Field("n", j.N)
		if err != nil {
			return k, err
		}
		e, err := b64Field("e", j.E)
		if err != nil {
			return k, err
		}
		if len(e) > 4 || e[0] == 0 {
			return k, errors.New(`"e" must be a positive integer of at most 4 bytes without leading zeros`)
		}
		if n[0] == 0 {
			return k, errors.New(`"n" has leading zero bytes`)
		}
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
		if err := checkRSA(pub); err != nil {
			return k, err
		}
		k = verifyKey{alg: "RS256", pub: pub}
	case "EC":
		if j.Crv != "P-256" {
			return k, errors.New(`"crv" must be "P-256"`)
		}
		x, err := b64Field("x", j.X)
		if err != nil {
			return k, err
		}
		y, err := b64Field("y", j.Y)
		if err != nil {
			return k, err
		}
		if len(x) != p256CoordLen || len(y) != p256CoordLen {
			return k, errors.New(`"x" and "y" must be 32 bytes each for P-256`)
		}
		point := append(append([]byte{4}, x...), y...)
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), point)
		if err != nil {
			return k, errors.New("point is not on curve P-256")
		}
		k = verifyKey{alg: "ES256", pub: pub}
	case "":
		return k, errors.New(`missing "kty"`)
	default:
		return k, errors.New(`unsupported "kty": RSA or EC only`)
	}
	if j.Alg != "" && j.Alg != k.alg {
		return k, fmt.Errorf(`"alg" must be %s for this key when present`, k.alg)
	}
	k.kid = j.Kid
	return k, nil
}

func b64Field(name, v string) ([]byte, error) {
	if v == "" {
		return nil, fmt.Errorf("missing %q", name)
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(v)
	if err != nil || len(b) == 0 {
		return nil, fmt.Errorf("%q is not unpadded base64url", name)
	}
	return b, nil
}
