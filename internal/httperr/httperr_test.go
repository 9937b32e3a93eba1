package httperr_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/internal/httperr"
)

// TestWrite: the status comes from the error's code (413 for a body over a
// limit), the body is one OCI error, an error that is not a *stowage.Error is
// logged and shown as a generic 500, HEAD gets no body.
func TestWrite(t *testing.T) {
	for _, tc := range []struct {
		name    string
		method  string
		err     error
		status  int
		code    stowage.ErrorCode
		message string
		logged  string
	}{
		{"not found", "GET", stowage.Errorf(stowage.CodeManifestUnknown, "no manifest"), 404, stowage.CodeManifestUnknown, "no manifest", ""},
		{"wrapped", "GET", fmt.Errorf("ctx: %w", stowage.Errorf(stowage.CodeDenied, "no")), 403, stowage.CodeDenied, "no", ""},
		{"too large", "PUT", httperr.TooLarge(stowage.CodeManifestInvalid, "manifest", 4<<20), 413, stowage.CodeManifestInvalid, "manifest is larger than the limit of 4 MiB", ""},
		{"plain error", "GET", errors.New("disk on fire"), 500, stowage.CodeInternal, "internal error", "disk on fire"},
		{"unavailable", "GET", &stowage.Error{Code: stowage.CodeUnavailable, Message: "key gone", Err: errors.New("kms down")}, 503, stowage.CodeUnavailable, "key gone", "kms down"},
		{"head", "HEAD", stowage.Errorf(stowage.CodeBlobUnknown, "no blob"), 404, "", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			log := slog.New(slog.NewTextHandler(&logs, nil))
			r := httptest.NewRequest(tc.method, "/v2/r/manifests/x", strings.NewReader("left over"))
			w := httptest.NewRecorder()
			w.Header().Set("Docker-Content-Digest", "sha256:x")
			httperr.Write(w, r, log, tc.err)
			if w.Code != tc.status {
				t.Errorf("status %d, want %d", w.Code, tc.status)
			}
			if w.Header().Get("Docker-Content-Digest") != "" {
				t.Error("Docker-Content-Digest kept on an error")
			}
			if tc.logged != "" && !strings.Contains(logs.String(), tc.logged) {
				t.Errorf("log %q does not say %q", logs.String(), tc.logged)
			}
			if tc.method == "HEAD" {
				if w.Body.Len() != 0 {
					t.Errorf("HEAD answered with a body %q", w.Body)
				}
				return
			}
			var we struct {
				Errors []struct {
					Code    stowage.ErrorCode `json:"code"`
					Message string            `json:"message"`
				} `json:"errors"`
			}
			if err := json.Unmarshal(w.Body.Bytes(), &we); err != nil || len(we.Errors) != 1 {
				t.Fatalf("body %q is not one OCI error: %v", w.Body, err)
			}
			if got := we.Errors[0]; got.Code != tc.code || !strings.Contains(got.Message, tc.message) {
				t.Errorf("error %s %q, want %s with %q", got.Code, got.Message, tc.code, tc.message)
			}
			if strings.Contains(w.Body.String(), "disk on fire") {
				t.Error("the cause of an internal error reached the client")
			}
		})
	}
}

// TestWriteClientGone: a request the client cancelled gets no answer.
func TestWriteClientGone(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r := httptest.NewRequest("GET", "/v2/", nil).WithContext(ctx)
	w := httptest.NewRecorder()
	httperr.Write(w, r, slog.New(slog.DiscardHandler), context.Canceled)
	if w.Body.Len() != 0 || w.Header().Get("Content-Type") != "" {
		t.Errorf("answered %d %q to a client that went away", w.Code, w.Body)
	}
}

// TestReadBody: at most limit bytes, by the declared length or by what arrives.
func TestReadBody(t *testing.T) {
	for _, tc := range []struct {
		name    string
		body    string
		hideLen bool
		tooBig  bool
	}{
		{"at the limit", "0123456789", false, false},
		{"declared over", "0123456789x", false, true},
		{"arrives over", "0123456789x", true, true},
		{"arrives at the limit", "0123456789", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("PUT", "/", strings.NewReader(tc.body))
			if tc.hideLen {
				r.ContentLength = -1
			}
			b, err := httperr.ReadBody(r, 10, stowage.CodeSizeInvalid, "request body")
			if tc.tooBig {
				w := httptest.NewRecorder()
				httperr.Write(w, r, slog.New(slog.DiscardHandler), err)
				if err == nil || w.Code != http.StatusRequestEntityTooLarge {
					t.Fatalf("ReadBody = %q, %v (status %d); want a 413", b, err, w.Code)
				}
				return
			}
			if err != nil || string(b) != tc.body {
				t.Fatalf("ReadBody = %q, %v; want %q", b, err, tc.body)
			}
		})
	}
}
