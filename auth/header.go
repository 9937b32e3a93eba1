package auth

import (
	"encoding/base64"
	"strings"
	"unicode/utf8"

	"github.com/stowage/stowage"
)

// Credentials is a parsed Authorization header.
type Credentials struct {
	Scheme   string // "basic" or "bearer"; "" when there was no header
	Username string // basic
	Password string // basic
	Token    string // bearer
}

// maxAuthorization bounds what the parser looks at: a bearer token of
// this server is well under 8 KiB.
const maxAuthorization = 16 << 10

// ParseAuthorization parses an Authorization header value: "Basic
// base64(name:password)" or "Bearer <token>" (schemes in any case). An
// empty value gives zero Credentials and no error.
func ParseAuthorization(h string) (Credentials, error) {
	h = strings.TrimSpace(h)
	if h == "" {
		return Credentials{}, nil
	}
	if len(h) > maxAuthorization {
		return Credentials{}, authError("the Authorization header is too long")
	}
	scheme, rest, _ := strings.Cut(h, " ")
	rest = strings.TrimLeft(rest, " ")
	switch strings.ToLower(scheme) {
	case "basic":
		b, err := base64.StdEncoding.DecodeString(rest)
		if err != nil {
			// Some clients leave out the padding.
			b, err = base64.RawStdEncoding.DecodeString(rest)
		}
		if err != nil {
			return Credentials{}, authError("the Basic credentials are not base64")
		}
		user, pass, ok := strings.Cut(string(b), ":")
		if !ok || user == "" {
			return Credentials{}, authError("the Basic credentials need a name and a password (name:password)")
		}
		if !utf8.ValidString(user) || strings.ContainsFunc(user, func(r rune) bool { return r < ' ' || r == 0x7f }) {
			return Credentials{}, authError("the name in the Basic credentials holds control characters or invalid UTF-8")
		}
		return Credentials{Scheme: "basic", Username: user, Password: pass}, nil
	case "bearer":
		if !isB64Token(rest) {
			return Credentials{}, authError("the Bearer token is malformed")
		}
		return Credentials{Scheme: "bearer", Token: rest}, nil
	}
	return Credentials{}, authError("unsupported authorization scheme; use Basic or Bearer")
}

// isB64Token checks RFC 6750's b64token: 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
func isB64Token(s string) bool {
	i := 0
	for i < len(s) {
		c := s[i]
		if isAlnum(c) || c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/' {
			i++
			continue
		}
		break
	}
	if i == 0 {
		return false
	}
	for ; i < len(s); i++ {
		if s[i] != '=' {
			return false
		}
	}
	return true
}

// BasicAuthorization formats Basic credentials (for clients and tests).
func BasicAuthorization(user, password string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
}

func authError(msg string) *stowage.Error {
	return &stowage.Error{Code: stowage.CodeUnauthorized, Message: msg}
}
