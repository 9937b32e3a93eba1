package stowage

import (
	"errors"
	"fmt"
	"net/http"
)

// ErrorCode is an OCI distribution error code (the "code" member of an error body).
type ErrorCode string

// The error codes of the OCI Distribution Specification, plus the few Stowage adds.
const (
	CodeBlobUnknown         ErrorCode = "BLOB_UNKNOWN"
	CodeBlobUploadInvalid   ErrorCode = "BLOB_UPLOAD_INVALID"
	CodeBlobUploadUnknown   ErrorCode = "BLOB_UPLOAD_UNKNOWN"
	CodeDigestInvalid       ErrorCode = "DIGEST_INVALID"
	CodeManifestBlobUnknown ErrorCode = "MANIFEST_BLOB_UNKNOWN"
	CodeManifestInvalid     ErrorCode = "MANIFEST_INVALID"
	CodeManifestUnknown     ErrorCode = "MANIFEST_UNKNOWN"
	CodeNameInvalid         ErrorCode = "NAME_INVALID"
	CodeNameUnknown         ErrorCode = "NAME_UNKNOWN"
	CodeSizeInvalid         ErrorCode = "SIZE_INVALID"
	CodeUnauthorized        ErrorCode = "UNAUTHORIZED"
	CodeDenied              ErrorCode = "DENIED"
	CodeUnsupported         ErrorCode = "UNSUPPORTED"
	CodeTooManyRequests     ErrorCode = "TOOMANYREQUESTS"
	// Not in the spec, but used by distribution and understood by clients.
	CodeRangeInvalid      ErrorCode = "RANGE_INVALID"
	CodePaginationInvalid ErrorCode = "PAGINATION_NUMBER_INVALID"
	CodeInvalidParameter  ErrorCode = "INVALID_PARAMETER" // management API: a bad query or body value
	CodeTagInvalid        ErrorCode = "TAG_INVALID"
	CodeUnavailable       ErrorCode = "UNAVAILABLE"
	CodeInternal          ErrorCode = "INTERNAL_ERROR"
	CodeEventsTrimmed     ErrorCode = "EVENTS_TRIMMED" // change feed: the reader's next events were deleted by retention
)

// statusOf is the one table from error codes to HTTP statuses.
var statusOf = map[ErrorCode]int{
	CodeBlobUnknown:         http.StatusNotFound,
	CodeBlobUploadInvalid:   http.StatusBadRequest,
	CodeBlobUploadUnknown:   http.StatusNotFound,
	CodeDigestInvalid:       http.StatusBadRequest,
	CodeManifestBlobUnknown: http.StatusBadRequest,
	CodeManifestInvalid:     http.StatusBadRequest,
	CodeManifestUnknown:     http.StatusNotFound,
	CodeNameInvalid:         http.StatusBadRequest,
	CodeNameUnknown:         http.StatusNotFound,
	CodeSizeInvalid:         http.StatusBadRequest,
	CodeUnauthorized:        http.StatusUnauthorized,
	CodeDenied:              http.StatusForbidden,
	CodeUnsupported:         http.StatusMethodNotAllowed,
	CodeTooManyRequests:     http.StatusTooManyRequests,
	CodeRangeInvalid:        http.StatusRequestedRangeNotSatisfiable,
	CodePaginationInvalid:   http.StatusBadRequest,
	CodeInvalidParameter:    http.StatusBadRequest,
	CodeTagInvalid:          http.StatusBadRequest,
	CodeUnavailable:         http.StatusServiceUnavailable,
	CodeInternal:            http.StatusInternalServerError,
	CodeEventsTrimmed:       http.StatusGone,
}

// HTTPStatus returns the HTTP status for an error code (500 for unknown codes).
func (c ErrorCode) HTTPStatus() int {
	if s, ok := statusOf[c]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// Error is the one error type of Stowage. Its Message is written for a person:
// it says what went wrong and, where it can, what to do about it.
type Error struct {
	Code    ErrorCode
	Message string
	Detail  any   // optional, JSON-encodable
	Err     error // optional wrapped cause, never shown to clients
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error with a formatted message.
func Errorf(code ErrorCode, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCodeOf returns the code of err, CodeInternal for errors that are not *Error.
func ErrorCodeOf(err error) ErrorCode {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}

// ErrNotFound is returned by DB lookups that find nothing. The engine turns it
// into the right OCI code for the thing that was looked up.
var ErrNotFound = errors.New("not found")
