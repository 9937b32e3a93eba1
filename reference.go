package stowage

import (
	_ "crypto/sha256" // register digest algorithms with go-digest
	_ "crypto/sha512"
	"strings"

	"github.com/opencontainers/go-digest"
)

// Digest is a content address such as "sha256:9f86d0…". It is go-digest's type.
type Digest = digest.Digest

// Limits from the OCI distribution spec and the grammar distribution enforces.
const (
	MaxNameLength = 255
	MaxTagLength  = 128
)

// ValidateName checks a repository name against the OCI grammar:
//
//	[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*
//
// written by hand because it runs on every request.
func ValidateName(name string) error {
	if name == "" || len(name) > MaxNameLength {
		return Errorf(CodeNameInvalid, "invalid repository name %q: must be 1 to %d characters", trunc(name), MaxNameLength)
	}
	for _, comp := range strings.Split(name, "/") {
		if !validComponent(comp) {
			return Errorf(CodeNameInvalid, "invalid repository name %q: each path component must be lowercase letters and digits, separated by '.', '_', '__' or dashes", trunc(name))
		}
	}
	return nil
}

func validComponent(s string) bool {
	if s == "" || !alnumLower(s[0]) || !alnumLower(s[len(s)-1]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if alnumLower(c) {
			continue
		}
		// A separator: ".", "_", "__" or one or more "-", always followed by an alphanumeric.
		switch c {
		case '.':
			if !alnumLower(s[i+1]) {
				return false
			}
		case '_':
			if s[i+1] == '_' {
				i++
			}
			if !alnumLower(s[i+1]) {
				return false
			}
		case '-':
			for s[i+1] == '-' {
				i++
			}
			if !alnumLower(s[i+1]) {
				return false
			}
		default:
			return false
		}
	}
	return true
}

func alnumLower(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }

// ValidateTag checks a tag against [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}.
func ValidateTag(tag string) error {
	if tag == "" || len(tag) > MaxTagLength {
		return Errorf(CodeTagInvalid, "invalid tag %q: must be 1 to %d characters", trunc(tag), MaxTagLength)
	}
	for i := 0; i < len(tag); i++ {
		c := tag[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' ||
			i > 0 && (c == '.' || c == '-')
		if !ok {
			return Errorf(CodeTagInvalid, "invalid tag %q: use letters, digits, '_', '.' and '-', not starting with '.' or '-'", trunc(tag))
		}
	}
	return nil
}

// ParseDigest parses and validates a digest's form: algorithm:hex, of an
// algorithm go-digest knows (sha256, sha384, sha512) with hex of its length.
// That is all a read needs (a digest nothing is stored under is simply not
// found). Stowage stores content only under sha256 and sha512, the
// algorithms the OCI image spec registers: every write also refuses others,
// sha384 included, with DIGEST_INVALID (checkAlgorithm).
func ParseDigest(s string) (Digest, error) {
	d, err := digest.Parse(s)
	if err != nil {
		return "", &Error{Code: CodeDigestInvalid, Message: "invalid digest " + quote(s) + ": want algorithm:hex, e.g. sha256:<64 hex digits>", Err: err}
	}
	return d, nil
}

// Reference is the tail of a manifest URL: a tag or a digest.
type Reference struct {
	Tag    string
	Digest Digest
}

// IsDigest reports whether the reference names a digest.
func (r Reference) IsDigest() bool { return r.Digest != "" }

func (r Reference) String() string {
	if r.Digest != "" {
		return string(r.Digest)
	}
	return r.Tag
}

// ParseReference parses a manifest reference: a digest if it contains ':', a tag otherwise.
func ParseReference(s string) (Reference, error) {
	if strings.Contains(s, ":") {
		d, err := ParseDigest(s)
		if err != nil {
			return Reference{}, err
		}
		return Reference{Digest: d}, nil
	}
	if err := ValidateTag(s); err != nil {
		return Reference{}, err
	}
	return Reference{Tag: s}, nil
}

func trunc(s string) string {
	if len(s) > 300 {
		return s[:300] + "…"
	}
	return s
}

func quote(s string) string { return "\"" + trunc(s) + "\"" }
