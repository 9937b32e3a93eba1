package stowage_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/stowage/stowage"
)

// Digests used across the root package tests.
var (
	hex64  = strings.Repeat("a", 64)
	hex96  = strings.Repeat("b", 96)
	hex128 = strings.Repeat("c", 128)
	dig256 = "sha256:" + hex64
	dig384 = "sha384:" + hex96
	dig512 = "sha512:" + hex128
)

// wantCode checks that err is a *stowage.Error with the given code, or nil
// when code is "".
func wantCode(t *testing.T, err error, code stowage.ErrorCode) {
	t.Helper()
	if code == "" {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("got no error, want %s", code)
	}
	var e *stowage.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not a *stowage.Error", err, err)
	}
	if e.Code != code {
		t.Fatalf("error code %s (%v), want %s", e.Code, err, code)
	}
	if e.Message == "" {
		t.Fatalf("error %s has no message", e.Code)
	}
}

func TestValidateName(t *testing.T) {
	tests := []struct {
		name  string
		valid bool
	}{
		{"a", true},
		{"0", true},
		{"library/ubuntu", true},
		{"a.b", true},
		{"a_b", true},
		{"a__b", true},
		{"a-b", true},
		{"a---b", true},
		{"a0/b1/c2", true},
		{"foo.bar_baz__qux-quux", true},
		{"a/b/c/d/e/f", true},
		{"a.b.c", true},
		{"a-b_c.d__e", true},
		{"blobs", true},
		{"foo/blobs/uploads", true},
		{"foo/manifests", true},
		{"v2", true},
		{strings.Repeat("a", 255), true},
		{strings.Repeat("a/", 127) + "a", true}, // 255 chars
		{strings.Repeat("a", 256), false},
		{strings.Repeat("a/", 127) + "ab", false}, // 256 chars
		{"", false},
		{"A", false},
		{"Library/ubuntu", false},
		{"library/Ubuntu", false},
		{"a/", false},
		{"/a", false},
		{"/", false},
		{"a//b", false},
		{"a..b", false},
		{"a._b", false},
		{"a_.b", false},
		{"a___b", false},
		{"a-_b", false},
		{"a_-b", false},
		{"a.-b", false},
		{"-a", false},
		{"a-", false},
		{"_a", false},
		{"a_", false},
		{"a__", false},
		{".a", false},
		{"a.", false},
		{"a/.b", false},
		{"a/-b", false},
		{"a/b-", false},
		{"a/_b", false},
		{"a b", false},
		{"a:b", false},
		{"a@b", false},
		{"a+b", false},
		{"a\x00", false},
		{"a\nb", false},
		{"é", false},
		{"a/é", false},
		{"_catalog", false},
		{"..", false},
		{"a/../b", false},
	}
	for _, tt := range tests {
		t.Run(trunc(tt.name), func(t *testing.T) {
			err := stowage.ValidateName(tt.name)
			if tt.valid {
				wantCode(t, err, "")
			} else {
				wantCode(t, err, stowage.CodeNameInvalid)
			}
			if got := nameRE.MatchString(tt.name) && len(tt.name) <= stowage.MaxNameLength; got != tt.valid {
				t.Errorf("test table disagrees with the grammar for %q", tt.name)
			}
		})
	}
}

func TestValidateTag(t *testing.T) {
	tests := []struct {
		tag   string
		valid bool
	}{
		{"latest", true},
		{"v1.0.0", true},
		{"1", true},
		{"_", true},
		{"_x", true},
		{"A", true},
		{"Z9", true},
		{"a-b.c_D", true},
		{"a--..__", true},
		{"sha256-" + hex64 + ".sig", true},
		{strings.Repeat("a", 128), true},
		{strings.Repeat("a", 129), false},
		{"", false},
		{".a", false},
		{"-a", false},
		{".", false},
		{"-", false},
		{"a:b", false},
		{"a/b", false},
		{"a b", false},
		{"a+b", false},
		{"a@b", false},
		{"a\x00", false},
		{"é", false},
		{"a\n", false},
	}
	for _, tt := range tests {
		t.Run(trunc(tt.tag), func(t *testing.T) {
			err := stowage.ValidateTag(tt.tag)
			if tt.valid {
				wantCode(t, err, "")
			} else {
				wantCode(t, err, stowage.CodeTagInvalid)
			}
			if got := tagRE.MatchString(tt.tag); got != tt.valid {
				t.Errorf("test table disagrees with the grammar for %q", tt.tag)
			}
		})
	}
}

func TestParseDigest(t *testing.T) {
	tests := []struct {
		in    string
		valid bool
	}{
		{dig256, true},
		{dig384, true},
		{dig512, true},
		{"sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", true},
		{"", false},
		{"sha256", false},
		{"sha256:", false},
		{":" + hex64, false},
		{"sha256:" + hex64[:63], false},
		{"sha256:" + hex64 + "a", false},
		{"sha256:" + strings.ToUpper(hex64), false},
		{"sha256:" + strings.Repeat("g", 64), false},
		{"SHA256:" + hex64, false},
		{"sha384:" + hex64, false},
		{"sha512:" + hex64, false},
		{"sha256:" + hex128, false},
		{"md5:" + strings.Repeat("a", 32), false},
		{"sha1:" + strings.Repeat("a", 40), false},
		{"sha256+b64u:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564", false},
		{"foo:bar", false},
		{" " + dig256, false},
		{dig256 + " ", false},
		{dig256 + "\n", false},
		{dig256 + ":", false},
		{"sha256::" + hex64, false},
		{"latest", false},
	}
	for _, tt := range tests {
		t.Run(trunc(tt.in), func(t *testing.T) {
			d, err := stowage.ParseDigest(tt.in)
			if !tt.valid {
				wantCode(t, err, stowage.CodeDigestInvalid)
				if d != "" {
					t.Errorf("got digest %q with the error", d)
				}
				return
			}
			wantCode(t, err, "")
			if string(d) != tt.in {
				t.Errorf("got %q, want %q", d, tt.in)
			}
			if got, _ := digestOracle(tt.in); !got {
				t.Errorf("test table disagrees with the oracle")
			}
		})
	}
}

func TestParseReference(t *testing.T) {
	tests := []struct {
		in       string
		wantTag  string
		wantDig  string
		wantCode stowage.ErrorCode
	}{
		{in: "latest", wantTag: "latest"},
		{in: "v1.2.3-rc.1_b", wantTag: "v1.2.3-rc.1_b"},
		{in: "_", wantTag: "_"},
		{in: strings.Repeat("x", 128), wantTag: strings.Repeat("x", 128)},
		{in: dig256, wantDig: dig256},
		{in: dig384, wantDig: dig384},
		{in: dig512, wantDig: dig512},
		{in: "sha256-" + hex64, wantTag: "sha256-" + hex64},
		{in: "", wantCode: stowage.CodeTagInvalid},
		{in: ".hidden", wantCode: stowage.CodeTagInvalid},
		{in: "-x", wantCode: stowage.CodeTagInvalid},
		{in: strings.Repeat("x", 129), wantCode: stowage.CodeTagInvalid},
		{in: "a/b", wantCode: stowage.CodeTagInvalid},
		{in: "sha256:abc", wantCode: stowage.CodeDigestInvalid},
		{in: "latest:1", wantCode: stowage.CodeDigestInvalid},
		{in: ":", wantCode: stowage.CodeDigestInvalid},
		{in: "md5:" + strings.Repeat("a", 32), wantCode: stowage.CodeDigestInvalid},
		{in: "sha256:" + strings.ToUpper(hex64), wantCode: stowage.CodeDigestInvalid},
	}
	for _, tt := range tests {
		t.Run(trunc(tt.in), func(t *testing.T) {
			ref, err := stowage.ParseReference(tt.in)
			wantCode(t, err, tt.wantCode)
			if tt.wantCode != "" {
				if ref != (stowage.Reference{}) {
					t.Errorf("got reference %+v with the error", ref)
				}
				return
			}
			if ref.Tag != tt.wantTag || string(ref.Digest) != tt.wantDig {
				t.Errorf("got %+v, want tag %q digest %q", ref, tt.wantTag, tt.wantDig)
			}
			if ref.IsDigest() != (tt.wantDig != "") {
				t.Errorf("IsDigest() = %v", ref.IsDigest())
			}
			if ref.String() != tt.in {
				t.Errorf("String() = %q, want %q", ref.String(), tt.in)
			}
		})
	}
}

func TestErrorCodeHTTPStatus(t *testing.T) {
	tests := []struct {
		code stowage.ErrorCode
		want int
	}{
		{stowage.CodeBlobUnknown, 404},
		{stowage.CodeBlobUploadInvalid, 400},
		{stowage.CodeBlobUploadUnknown, 404},
		{stowage.CodeDigestInvalid, 400},
		{stowage.CodeManifestBlobUnknown, 400},
		{stowage.CodeManifestInvalid, 400},
		{stowage.CodeManifestUnknown, 404},
		{stowage.CodeNameInvalid, 400},
		{stowage.CodeNameUnknown, 404},
		{stowage.CodeSizeInvalid, 400},
		{stowage.CodeUnauthorized, 401},
		{stowage.CodeDenied, 403},
		{stowage.CodeUnsupported, 405},
		{stowage.CodeTooManyRequests, 429},
		{stowage.CodeRangeInvalid, 416},
		{stowage.CodePaginationInvalid, 400},
		{stowage.CodeTagInvalid, 400},
		{stowage.CodeUnavailable, 503},
		{stowage.CodeInternal, 500},
		{"SOMETHING_ELSE", 500},
	}
	for _, tt := range tests {
		if got := tt.code.HTTPStatus(); got != tt.want {
			t.Errorf("%s.HTTPStatus() = %d, want %d", tt.code, got, tt.want)
		}
	}
	if got := stowage.ErrorCodeOf(errors.New("plain")); got != stowage.CodeInternal {
		t.Errorf("ErrorCodeOf(plain error) = %s", got)
	}
	wrapped := errors.Join(errors.New("ctx"), stowage.Errorf(stowage.CodeDenied, "no"))
	if got := stowage.ErrorCodeOf(wrapped); got != stowage.CodeDenied {
		t.Errorf("ErrorCodeOf(wrapped) = %s", got)
	}
}

func trunc(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
