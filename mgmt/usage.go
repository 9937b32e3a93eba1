package mgmt

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/usage"
)

// serveUsage answers GET /api/v1/usage and /api/v1/usage/REPO: the totals
// (the registry's, or the repository's) and its rows, all of them, or with
// ?n=N one page of them (after ?last=, the value from the Link header of the
// page before), with a Link header to the next page as the catalog has.
// Registry rows are in repository name order (last: a name); a
// repository's manifests newest first (last: an opaque cursor).
func (h *Handler) serveUsage(ctx context.Context, w http.ResponseWriter, r *http.Request, repo string) error {
	n, err := usagePageSize(r)
	if err != nil {
		return err
	}
	last := r.URL.Query().Get("last")
	rep := usage.New(h.reg)
	if repo == "" {
		u, next, err := rep.UsagePage(ctx, last, n)
		if err != nil {
			return err
		}
		setNextPage(w, r, n, next)
		return writeJSON(w, u)
	}
	if err := stowage.ValidateName(repo); err != nil {
		return err
	}
	d, next, err := rep.RepositoryPage(ctx, repo, last, n)
	if err != nil {
		return err
	}
	setNextPage(w, r, n, next)
	return writeJSON(w, d)
}

// usagePageSize reads n: 0 (all) without it, else 1 to usage.MaxPage.
func usagePageSize(r *http.Request) (int, error) {
	s := r.URL.Query().Get("n")
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > usage.MaxPage {
		if len(s) > 20 {
			s = s[:20] + "..."
		}
		return 0, stowage.Errorf(stowage.CodePaginationInvalid, "invalid n=%q: want a number from 1 to %d", s, usage.MaxPage)
	}
	return n, nil
}

// setNextPage sets the Link header to the page after this one, if any.
func setNextPage(w http.ResponseWriter, r *http.Request, n int, next string) {
	if next == "" {
		return
	}
	q := url.Values{"n": {strconv.Itoa(n)}, "last": {next}}
	w.Header().Set("Link", fmt.Sprintf(`<%s?%s>; rel="next"`, r.URL.Path, q.Encode()))
}
