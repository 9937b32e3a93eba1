package auth

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"time"
)

// Claims are the claims of the tokens the token endpoint issues (a JWT
// signed with HS256 by a key the registry keeps in its settings). The
// registered claims and "access" follow the Docker token specification;
// the stowage_* claims bind the token to the credential it was issued for.
type Claims struct {
	Issuer    string            `json:"iss"`
	Subject   string            `json:"sub"` // the user or token name; "" for anonymous callers
	Audience  string            `json:"aud"` // the service
	Expiry    int64             `json:"exp"`
	NotBefore int64             `json:"nbf"`
	IssuedAt  int64             `json:"iat"`
	ID        string            `json:"jti"`
	Access    []ResourceActions `json:"access"`
	// Kind is "user", "token" or "anonymous".
	Kind string `json:"stowage_kind"`
	// Credential is the stamp of the password the token was issued for:
	// changing or regenerating that password invalidates the token.
	Credential string `json:"stowage_cred,omitempty"`
	// Use is "access" (a bearer token for requests) or "refresh" (only
	// good at the token endpoint, for new access tokens).
	Use string `json:"stowage_use"`
}

const (
	useAccess  = "access"
	useRefresh = "refresh"
	maxToken   = 8 << 10
)

// signingKey is the HS256 key, kept in the settings under settingKey.
type signingKey struct {
	ID      string    `json:"kid"`
	Alg     string    `json:"alg"`
	Key     []byte    `json:"key"`
	Created time.Time `json:"created"`
}

func newSigningKey(now time.Time) (signingKey, error) {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		return signingKey{}, err
	}
	id := make([]byte, 8)
	if _, err := rand.Read(id); err != nil {
		return signingKey{}, err
	}
	return signingKey{ID: hex.EncodeToString(id), Alg: "HS256", Key: k, Created: now}, nil
}

type jwtHeader struct {
	Alg string `json:"alg"`
	Typ string `json:"typ,omitempty"`
	Kid string `json:"kid,omitempty"`
}

var b64 = base64.RawURLEncoding

func (k signingKey) sign(c Claims) (string, error) {
	h, err := json.Marshal(jwtHeader{Alg: "HS256", Typ: "JWT", Kid: k.ID})
	if err != nil {
		return "", err
	}
	p, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	msg := b64.EncodeToString(h) + "." + b64.EncodeToString(p)
	return msg + "." + b64.EncodeToString(k.mac(msg)), nil
}

func (k signingKey) mac(msg string) []byte {
	m := hmac.New(sha256.New, k.Key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

var errBadToken = errors.New("malformed or badly signed token")

// parse checks a token's form and signature and returns its claims; it
// does not look at times, audience or use (see Authority.verify).
func (k signingKey) parse(tok string) (Claims, error) {
	if len(tok) > maxToken || len(k.Key) == 0 {
		return Claims{}, errBadToken
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return Claims{}, errBadToken
	}
	sig, err := b64.DecodeString(parts[2])
	if err != nil || !hmac.Equal(sig, k.mac(parts[0]+"."+parts[1])) {
		return Claims{}, errBadToken
	}
	hb, err := b64.DecodeString(parts[0])
	if err != nil {
		return Claims{}, errBadToken
	}
	var h jwtHeader
	if err := strictJSON(hb, &h); err != nil || h.Alg != "HS256" || h.Kid != k.ID {
		return Claims{}, errBadToken
	}
	pb, err := b64.DecodeString(parts[1])
	if err != nil {
		return Claims{}, errBadToken
	}
	var c Claims
	if err := strictJSON(pb, &c); err != nil {
		return Claims{}, errBadToken
	}
	return c, nil
}

func strictJSON(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errBadToken
	}
	return nil
}

func randomID(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported systems
	}
	return hex.EncodeToString(b)
}
