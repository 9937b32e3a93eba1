package transfer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/stowage/stowage"
)

// LayoutError is a layout that cannot be imported as it is: a blob or
// manifest whose bytes do not match its digest or size, or one that is
// neither in the layout nor in the registry. Running the import again
// cannot help; the layout must be written again.
type LayoutError struct {
	Err error
	// Missing: content the layout leaves out and the registry lacks (an
	// incremental layout whose base was not imported); Err says what to do.
	Missing bool
}

func (e *LayoutError) Error() string {
	if e.Missing {
		return e.Err.Error()
	}
	return e.Err.Error() + ": the layout is damaged; write it again (export it again, or copy it again from its source)"
}
func (e *LayoutError) Unwrap() error { return e.Err }

// RegistryError is an error answer of the registry: its HTTP status and
// its OCI error code and message.
type RegistryError struct {
	What          string // what was asked ("push manifest team/app:v1")
	Status        int
	Code, Message string
}

func (e *RegistryError) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("%s: registry answered %d %s", e.What, e.Status, http.StatusText(e.Status))
	}
	return fmt.Sprintf("%s: %s: %s", e.What, e.Code, e.Message)
}

// Retryable reports whether running the same transfer again may succeed
// where err stopped it: a connection failure, an interruption, a registry
// that is overloaded or failing (5xx, 429). A damaged layout and a refusal
// of the registry (a lock, tag immutability, a quota, a bad request) are
// not: a rerun meets them again.
func Retryable(err error) bool {
	var le *LayoutError
	var re *RegistryError
	var se *stowage.Error
	switch {
	case err == nil:
		return false
	case errors.As(err, &le):
		return false
	case errors.As(err, &re):
		return re.Status >= 500 || re.Status == http.StatusTooManyRequests ||
			re.Code == string(stowage.CodeUnavailable) || re.Code == string(stowage.CodeTooManyRequests)
	case errors.As(err, &se):
		return se.Code == stowage.CodeUnavailable || se.Code == stowage.CodeTooManyRequests
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded), errors.Is(err, io.ErrUnexpectedEOF):
		return true
	}
	return true // a connection failure (net.Error, url.Error) or an I/O error
}

// Refusal is an image the registry refused.
type Refusal struct {
	Image string `json:"image"` // repo:tag or repo@digest
	Error string `json:"error"`
}

// ExplainImport adds to an import's error what was pushed before it
// stopped, what was refused, and whether running it again can help.
func ExplainImport(err error, rep ImportReport) error {
	if err == nil {
		return nil
	}
	var b strings.Builder
	if rep.Manifests == 0 && rep.BlobsUploaded == 0 && rep.BlobsMounted == 0 {
		b.WriteString("\n  nothing was pushed")
	} else {
		fmt.Fprintf(&b, "\n  pushed before it stopped: %d manifests (%d images, %d referrers), %d blobs uploaded (%s), %d blobs linked",
			rep.Manifests, rep.Images, rep.Referrers, rep.BlobsUploaded, bytesText(rep.Uploaded), rep.BlobsMounted)
		if len(rep.TagsPushed) > 0 {
			fmt.Fprintf(&b, "\n  tags pushed: %s", strings.Join(rep.TagsPushed, ", "))
		}
	}
	if len(rep.Refused) > 0 {
		b.WriteString("\n  refused:")
		for _, r := range rep.Refused {
			fmt.Fprintf(&b, "\n    %s: %s", r.Image, r.Error)
		}
	}
	var le *LayoutError
	switch {
	case errors.As(err, &le):
	case Retryable(err):
		b.WriteString("\n  run the same command again to go on (what is there is skipped)")
	default:
		b.WriteString("\n  a rerun is refused the same way until what refused it changes (the lock, the immutability rule, the quota, the layout)")
	}
	return fmt.Errorf("%w%s", err, b.String())
}

func bytesText(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
