// Package httperr turns errors into HTTP answers for every HTTP layer (the
// OCI API, the management API, access control, request limits): an OCI
// error body and the status its code decides. It also reads bounded request
// bodies, so that one over its limit is answered 413 the same way
// everywhere.
package httperr

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/stowage/stowage"
)

// Refused requests and their bodies.
//
// Go's server closes the connection after the answer when a handler leaves
// more than 256 KiB of a request body unread. A client still sending (most
// write the whole body before they read anything) then gets a reset or a
// broken pipe instead of the answer. So before an error is written, what is
// left of the body is read and thrown away, up to drainMax bytes and for at
// most drainTime. Bodies declared longer than that are not drained: the
// client gets the answer and the connection closes.
const (
	drainMax  = 4 * stowage.MaxManifestSize // a few times the largest bounded body
	drainTime = 10 * time.Second
)

// drain reads and discards what is left of r's body (see above).
func drain(w http.ResponseWriter, r *http.Request) {
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength > drainMax {
		return
	}
	// Not every ResponseWriter supports deadlines; the byte bound holds anyway.
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(drainTime))
	io.CopyN(io.Discard, r.Body, drainMax)
}

// tooLarge marks an error about a body over a limit: it is answered
// 413 Request Entity Too Large, whatever its code.
type tooLarge struct{ e *stowage.Error }

func (t *tooLarge) Error() string { return t.e.Error() }
func (t *tooLarge) Unwrap() error { return t.e }

// TooLarge returns the error for a request body over limit bytes: status 413
// with code (MANIFEST_INVALID, SIZE_INVALID, …) and a message that gives the
// limit. what names the body ("manifest", "request body").
func TooLarge(code stowage.ErrorCode, what string, limit int64) error {
	return &tooLarge{stowage.Errorf(code, "%s is larger than the limit of %s (%d bytes)", what, stowage.HumanBytes(limit), limit)}
}

// ReadBody reads a whole request body of at most limit bytes: a longer one
// (by its Content-Length or by what arrives) is TooLarge.
func ReadBody(r *http.Request, limit int64, code stowage.ErrorCode, what string) ([]byte, error) {
	if r.ContentLength > limit {
		return nil, TooLarge(code, what, limit)
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return nil, &stowage.Error{Code: code, Message: "could not read the " + what, Err: err}
	}
	if int64(len(body)) > limit {
		return nil, TooLarge(code, what, limit)
	}
	return body, nil
}

// statusOf is the HTTP status of an error whose *stowage.Error is e.
func statusOf(err error, e *stowage.Error) int {
	var tl *tooLarge
	if errors.As(err, &tl) {
		return http.StatusRequestEntityTooLarge
	}
	return e.Code.HTTPStatus()
}

type wireError struct {
	Code    stowage.ErrorCode `json:"code"`
	Message string            `json:"message"`
	Detail  any               `json:"detail,omitempty"`
}

// Write is the one place errors become responses, for the OCI API and
// the management API, access control and request limits alike: the code decides the status from the table in
// stowage (413 for a body over a limit, see TooLarge); errors that are not
// *stowage.Error are logged and shown as a generic failure. Before it
// answers, it reads what is left of the request body (bounded), so a client
// still sending can read the answer instead of a connection reset.
func Write(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	var e *stowage.Error
	if !errors.As(err, &e) {
		if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
			return // the client went away
		}
		log.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		e = &stowage.Error{Code: stowage.CodeInternal, Message: "internal error; the server log has the details"}
	} else if e.Code == stowage.CodeInternal || e.Code == stowage.CodeUnavailable {
		// Damaged data, an unavailable key or storage: an operator must see it.
		log.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "code", e.Code, "err", e)
	} else if e.Err != nil {
		log.DebugContext(r.Context(), "request refused", "method", r.Method, "path", r.URL.Path, "code", e.Code, "err", e.Err)
	}
	body, _ := json.Marshal(struct {
		Errors []wireError `json:"errors"`
	}{[]wireError{{e.Code, e.Message, e.Detail}}})
	// Read what the client is still sending, so it can read the answer.
	drain(w, r)
	hd := w.Header()
	hd.Del("Docker-Content-Digest")
	hd.Set("Content-Type", "application/json")
	hd.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(statusOf(err, e))
	if r.Method != http.MethodHead {
		w.Write(body)
	}
}
